"""The API's OpenAPI 3.1 document, made at runtime from the app's routes (``document.py``), the
one table of what each operation takes and answers (``catalog.py``) and the msgspec Structs
that validate requests or describe answers (``shapes.py``); the offline docs page
(``web/routes/apidocs.py``). See docs/ARCHITECTURE.md, "The API reference"."""
