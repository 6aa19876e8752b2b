# One image for the three services: `docker run amends intake|decision|fulfilment`.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/amends
COPY requirements.txt pyproject.toml README.md ./
RUN /opt/amends/bin/pip install --no-cache-dir -r requirements.txt
COPY amends ./amends
COPY schemas ./schemas
COPY services ./services
RUN /opt/amends/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home amends
COPY --from=build /opt/amends /opt/amends
ENV PATH=/opt/amends/bin:$PATH PYTHONUNBUFFERED=1 AMENDS_HTTP_HOST=0.0.0.0
USER amends
ENTRYPOINT ["/bin/sh", "-c", "exec python -m services.\"$0\"", "--"]
CMD ["intake"]
