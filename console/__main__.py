from console.bootstrap import build, serve

serve(build())
