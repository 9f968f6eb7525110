"""The platform's single HTTP entry point: routes requests to the services behind it."""
