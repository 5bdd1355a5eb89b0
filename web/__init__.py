"""The web layer: Flask app factory, JSON API, Open Inference Protocol v2 routes and HTML pages."""
