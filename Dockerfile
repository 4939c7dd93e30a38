# The Airflow image of this project: the official apache/airflow 3.3.2 image (Python 3.11, the version the
# package supports) extended with the package and its declared dependencies, at the locked versions.
#
#   docker compose build            (docker-compose.yaml builds it as ${AIRFLOW_IMAGE_NAME})
#   docker build -t dynamics-jobqueue-airflow:0.1.0 .
#
# The package (provider and plugin, registered by its entry points) is installed into site-packages; dags/ and
# include/ sit under /opt/airflow, so the same image runs under docker compose (which mounts the checkout's dags/
# and include/ over these) and on Kubernetes with the official Helm chart (which runs the image as built).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# The provider is installed as a wheel would be, with only its declared dependencies (no test, lint or browser
# tools: those are development requirements), at the versions of the lock file: requirements.txt serves as
# constraints. Airflow is pinned again on the command line, as Airflow's "extending the image" guide asks.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/src/
COPY --chown=airflow:0 plugins /opt/airflow/src/plugins
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" --constraint /opt/airflow/requirements.txt \
        /opt/airflow/src \
    && rm -rf /opt/airflow/src

# The DAG files and their data (table mappings); docker compose mounts the checkout's folders over these.
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 dags /opt/airflow/dags

ENV DYNAMICS_INCLUDE_DIR=/opt/airflow/include \
    PYTHONPATH=/opt/airflow/include
