"""One router per endpoint group; each Lambda function serves one, the local server serves all."""
