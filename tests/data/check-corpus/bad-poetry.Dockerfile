# expect: IB101 line 7
FROM python:3.12
ENV POETRY_VIRTUALENVS_CREATE=false
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install poetry==1.8.3
WORKDIR /srv
COPY . .
RUN --mount=type=cache,target=/root/.cache/pypoetry poetry install --only main
CMD ["python", "-m", "srv"]
