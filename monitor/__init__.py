"""Watching the deployed model: what it was asked, and whether that still looks like MNIST.

``monitor.request_log`` appends a record per answered image (the served model's and the
page's), ``monitor.log_settings`` opens it from ``params.yaml``'s ``monitor`` section for
every server (and hands those settings to MLServer's process), ``monitor.descriptors`` says
what each image looks like in a few numbers, and ``python -m monitor``
(``monitor.drift_check``) compares a window of the log with the training data
(docs/monitoring.md). Writing the log needs numpy, scipy and pydantic, which the serving
environment has; the report needs the monitor extra (Evidently).
"""
