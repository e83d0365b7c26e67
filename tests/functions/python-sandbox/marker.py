MARKER = "python-sandbox-code"
