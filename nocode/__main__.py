from nocode.cli import app

app()
