"""The JSON API (``/api/v1``), shaped like the official's."""
