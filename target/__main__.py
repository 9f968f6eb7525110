from servicekit.app import serve
from target.bootstrap import build

app, runtime = build()
serve(app, runtime)
