"""The bundled TensorFlow-Serving-compatible model server (``python -m servegate.serving``).

Modules: ``flags`` (command line), ``model_config`` (which models), ``loader``
(one version in a TF1 session), ``manager`` (versions, polling, routing),
``tensor_codec`` / ``json_api`` (bodies), ``rest`` (Starlette), ``grpc_service``,
``main`` (start-up order). Nothing here imports TensorFlow at package import.
"""
