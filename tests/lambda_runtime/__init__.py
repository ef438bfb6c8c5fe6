"""`make lambda-test` (`python -m tests.lambda_runtime`): the built functions on the Lambda runtime.

Not a pytest folder: a harness run by make and CI (see __main__.py).
"""
