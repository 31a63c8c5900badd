"""The JSON API (SPEC §2.9): one NinjaAPI under /api/v1/ that mounts each app's router, with
the bearer-token check, the input types and the error bodies every router shares."""
