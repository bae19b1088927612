# Caracal on scratch. Built by `make image`, which stages the static binary,
# CA certificates and time zone data in bin/image, so this build pulls
# nothing from the network.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="caracal" \
      org.opencontainers.image.description="Spending budgets for AI agents: MCP proxy, LLM proxy and a verifiable ledger" \
      org.opencontainers.image.version="${VERSION}"
COPY etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY usr/share/zoneinfo /usr/share/zoneinfo
COPY caracal /usr/local/bin/caracal
# The home (config.yaml, keys/, caracal.db) is a volume owned by the
# unprivileged user the process runs as.
COPY --chown=65532:65532 var/lib/caracal /var/lib/caracal
ENV CARACAL_HOME=/var/lib/caracal \
    PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    ZONEINFO=/usr/share/zoneinfo
USER 65532:65532
WORKDIR /var/lib/caracal
VOLUME ["/var/lib/caracal"]
EXPOSE 8080 8090
ENTRYPOINT ["caracal"]
CMD ["proxy", "--listen", "0.0.0.0:8080"]
