"""Shipped examples as package data: the persona answers files and the bundled demo (answers, data,
tokenizer). Read with `importlib.resources.files("advisor._examples")`."""
