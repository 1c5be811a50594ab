"""Container images without a Docker daemon: reproducible layers, OCI configs and manifests, a
distribution API client, and a builder that pushes only the blobs a registry lacks.

    layers.py    reproducible layers from a folder or a list of entries
    wheels.py    the dependency layer from linux/amd64 CPython wheels (never the host's packages)
    oci.py       image config and manifests (OCI and Docker schema2) as canonical JSON
    registry.py  the OCI distribution API client (references, auth challenges, blobs, manifests)
    builder.py   build(base, layers, settings, target) and exists(target)
    runtime.py   the serving runtime image of a backend: found by its tag, or built and pushed
    debian.py    an offline python:3.11 base from Debian bookworm's .debs
    errors.py    what goes wrong with a registry, as cloudml errors

Nothing is imported here, so `import cloudml.images.layers` costs only that module.
"""
