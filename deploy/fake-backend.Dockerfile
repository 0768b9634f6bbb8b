# The tests' fake Cronium backend (tests/support/backend.rs, run by
# tests/support/bin/fake_backend.rs) FROM scratch, for the compose stack
# of the container tests (deploy/compose.yaml). A test fixture, not a
# backend. Built by `deploy/build-image.sh fake-backend`.
FROM scratch
COPY rootfs/ /
USER 1000:1000
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/cronium-fake-backend"]
