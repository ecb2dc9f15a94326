"""The admin web app's routes, one module per page and its API (assembled in natpass.web.app)."""
