# expect: IB101 line 5
# expect: IB201 line 6
FROM python:3.12-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -r requirements.txt
CMD ["python", "-m", "app"]
