"""Triggers of the provider: they wait in the triggerer's event loop."""

from __future__ import annotations

from typing import Any, ClassVar


class SerializedArguments:
    """Mixin: ``serialize()`` returns every constructor argument, named once in ``arguments``,
    so that another triggerer (after a restart or a failover) rebuilds the same trigger."""

    arguments: ClassVar[tuple[str, ...]] = ()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and every constructor argument."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}", {name: getattr(self, name) for name in self.arguments}
