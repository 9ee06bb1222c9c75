# Thin wrappers: the logic lives in scripts/bootstrap.sh (see docs/development.md).
SHELL := /bin/bash
BOOTSTRAP := bash scripts/bootstrap.sh

.DEFAULT_GOAL := help
.PHONY: help run test lint migrate bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## /  make \1\t/' | expand -t 16

run: ## install what is missing, load demo data, serve on port 8000 (PORT=...) with a Celery worker and beat
	@$(BOOTSTRAP) run

test: ## install what is missing, then ruff, mypy, makemigrations --check and pytest (PYTEST_ARGS=...)
	@$(BOOTSTRAP) test

lint: ## ruff check, ruff format --check, mypy on the pure cores
	@$(BOOTSTRAP) lint

migrate: ## install what is missing and apply migrations
	@$(BOOTSTRAP) migrate

bench: ## run every bench/*.py with the venv's Python
	@$(BOOTSTRAP) bench

clean: ## stop the throwaway PostgreSQL/Redis under .local/ and remove .local/
	@$(BOOTSTRAP) clean
