# Airflow 3 with this provider installed, for docker-compose.yaml.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 . /opt/airflow-provider-arr
# The image already pins Airflow and its dependencies; add only the provider.
RUN pip install --no-cache-dir /opt/airflow-provider-arr
