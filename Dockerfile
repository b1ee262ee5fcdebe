# The service's gunicorn, meant to run BEHIND a reverse proxy, not on the open network.
#
# gunicorn is not an edge server: a client that sends its headers or body slowly holds one
# of its threads, and its own error pages (400, 414, 431) are HTML. The deployment is nginx
# in front, buffering requests and answering its own errors in JSON: deploy/nginx.conf.template
# (scripts/stack runs exactly that on one machine; see README "Deploying"). Run this image on
# a network only the proxy can reach, with TRUSTED_PROXY_HOPS=1, and publish the proxy's port,
# not 5000. It binds 0.0.0.0:5000 because a proxy in another container must reach it; started
# with no TRUSTED_PROXY_HOPS it logs a warning saying that it is exposed without a proxy.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BIND=0.0.0.0:5000

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# The project itself (its packages and the neuron-interp command), its dependencies pinned above.
RUN pip install --no-deps . && useradd --create-home --uid 10001 app \
    && mkdir -p /app/var && chown -R app /app/var
USER app

EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4).status == 200 else 1)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "server:app"]
