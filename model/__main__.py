from model.bootstrap import build
from servicekit.app import serve

app, runtime = build()
serve(app, runtime)
