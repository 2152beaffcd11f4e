"""Server2: the SageMaker inference container (docs/architecture.md "Server2").

server2/serve or `python -m server2` starts gunicorn (gunicorn.conf.py) with one worker
process, which calls server2.app's create_app(): the models load in the background while
/ping answers 503, then the poller (poller.py) and /invocations hand jobs to one dispatcher
thread (dispatch.py) that runs them one at a time through worker.py.
"""
