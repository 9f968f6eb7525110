"""The web console: HTML pages over the platform's API, behind the gateway at ``/ui``."""
