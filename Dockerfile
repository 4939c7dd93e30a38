# The Airflow image of this project: the official apache/airflow 3.3.2 image (Python 3.11, the version the
# package supports) extended with the pinned requirements and the package itself.
#
#   docker compose build            (docker-compose.yaml builds it as ${AIRFLOW_IMAGE_NAME})
#   docker build -t dynamics-jobqueue-airflow:0.1.0 .
#
# The layout under /opt/airflow mirrors the repository (dags/, plugins/, include/), so the same image runs
# under docker compose (which mounts the checkout's folders over these for development) and on Kubernetes
# with the official Helm chart (which runs the image as built).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# Pinned requirements first: the layer is rebuilt only when the lock changes. Airflow is pinned again on the
# command line, as Airflow's "extending the image" guide asks, so no requirement can move it.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 dags /opt/airflow/dags
# Editable, so the package is imported from /opt/airflow/plugins: a compose mount of ./plugins takes effect
# without a rebuild, and the provider entry point (connection types) is registered either way.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow

ENV DYNAMICS_INCLUDE_DIR=/opt/airflow/include \
    PYTHONPATH=/opt/airflow/include
