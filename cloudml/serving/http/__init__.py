"""The HTTP layer: the ASGI app, its dispatch, and one adapter per cloud's serving contract,
each decoding requests into the data plane's one predict call and rendering its answer.
Everything HTTP (statuses, headers, media types) stays in this package."""
