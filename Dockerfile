# The backoffice as deployed in deploy/traefik/stack.yml (image nlp-backoffice).
# docker build -t nlp-backoffice .   Configure with the environment (README, Configuration).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=0 SECRET_KEY=build-only python manage.py collectstatic --noinput -v0
# Several workers: rate-limit counters must be in Redis (REDIS_URL; the memory backend refuses to start).
ENV FORWARD_AUTH_BACKEND=redis
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && deploy/serve"]
