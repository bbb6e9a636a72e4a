"""The ARR client: the session API as a sans-IO protocol, and the two transports that drive it.

Modules, from the bottom up (each imports only those above it in this list):

* :mod:`.messages`: what travels: :class:`~.messages.ApiRequest`, :class:`~.messages.ApiResponse`.
* :mod:`.errors`: answers to exceptions, and typed reading of answer fields.
* :mod:`.retry`: which failures are repeated, how long to wait, for how long in all.
* :mod:`.auth`: the STS token: its request, its cache, its expiry.
* :mod:`.dialects`: the two API versions (v1, 2021-01-01): request building and answer reading.
* :mod:`.config`: a connection's fields and extras, validated into a :class:`~.config.ClientConfig`.
* :mod:`.protocol`: every operation as a generator of requests, free of I/O.
* :mod:`.transport`: the sync (requests) and async (httpx) drivers of the protocol.

Nothing here imports Airflow beyond the exceptions: the hook (:mod:`airflow_provider_arr.hooks`)
reads the connection and owns a transport; what a create operator does after a lost answer is in
:mod:`airflow_provider_arr.hooks.recovery`.
"""
