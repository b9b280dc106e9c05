# The front door: `make run` serves on SQLite, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF := build/tools/node_modules/.bin/buf
PROTOS := $(wildcard protos/seats/v1/*.proto)
GEN_DIR := clients/python
GENERATED := $(GEN_DIR)/seats/v1/seat_service_pb2.py
# The contract with its comments, for reflection and for `grpcurl -protoset`; committed like the code.
DESCRIPTOR_SET := service/contract.binpb
# The contract of the last release, which `make buf-breaking` compares the protos with.
RELEASED_IMAGE := protos/releases/v0.1.0.binpb
PROTODEPS := build/protodeps/google/type/money.proto
# The server takes every setting from its flags, SEATS_* environment variables and defaults
# (`python -m service.server --help`), so `make run` and `make migrate` pass none of their own:
# `SEATS_ADDRESS=127.0.0.1:50071 make run` serves there. `make run ADDRESS=... DATABASE_URL=...`
# still works, and only a value given on the make command line becomes a flag (a DATABASE_URL or
# ADDRESS the environment happens to hold does not).
given = $(filter command line,$(origin $(1)))
SERVER_FLAGS := $(if $(call given,ADDRESS),--address '$(ADDRESS)') $(if $(call given,DATABASE_URL),--database-url '$(DATABASE_URL)')
MIGRATE_FLAGS := $(if $(call given,DATABASE_URL),--database-url '$(DATABASE_URL)')
PYTEST_ARGS ?=

.PHONY: venv protos check-generated migrate run test test-fast lint buf-lint buf-breaking bench clean

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c "import sys; assert sys.version_info >= (3, 11), sys.version" || { echo "Python 3.11 or newer is needed: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./clients/python -e '.[dev]'
	touch $@

# google/type/money.proto ships with googleapis-common-protos; copy it where protoc and buf find it.
$(PROTODEPS): $(INSTALLED)
	mkdir -p $(dir $@)
	cp "$$($(BIN)/python -c 'import google.type.money_pb2 as m, os; print(os.path.dirname(m.__file__))')/money.proto" $@

$(GENERATED): $(PROTOS) $(PROTODEPS) $(INSTALLED)
	rm -f $(GEN_DIR)/seats/v1/*_pb2*.py $(GEN_DIR)/seats/v1/*_pb2*.pyi
	$(BIN)/python -m grpc_tools.protoc -I protos -I build/protodeps \
	  --python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=$(GEN_DIR) \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=$(GEN_DIR) \
	  $(PROTOS)
	touch $@

$(DESCRIPTOR_SET): $(PROTOS) $(PROTODEPS) $(INSTALLED) service/contract.py
	$(BIN)/python -m grpc_tools.protoc -I protos -I build/protodeps \
	  --include_source_info --include_imports --descriptor_set_out=build/protoc.binpb $(PROTOS)
	$(BIN)/python -m service.contract build/protoc.binpb $@

protos: $(GENERATED) $(DESCRIPTOR_SET)

# The generated modules are committed, so that `pip install ./clients/python` works from a clone.
# CI regenerates them and fails when that changes anything.
check-generated: $(PROTODEPS) $(INSTALLED)
	touch $(PROTOS)
	$(MAKE) --no-print-directory protos
	@git diff --exit-code --stat -- $(GEN_DIR)/seats/v1 $(DESCRIPTOR_SET) \
	  && test -z "$$(git status --porcelain -- $(GEN_DIR)/seats/v1 $(DESCRIPTOR_SET))" \
	  || { echo "the generated code in $(GEN_DIR)/seats/v1 or $(DESCRIPTOR_SET) is stale: run 'make protos' and commit it"; exit 1; }

$(BUF):
	mkdir -p build/tools
	npm install --silent --no-audit --no-fund --prefix build/tools @bufbuild/buf@$(BUF_VERSION)

buf-lint: $(BUF) $(PROTODEPS)
	$(BUF) lint

# Only additive changes since the last release: the protos against its committed Buf image (no git
# tag needed), image to image (a workspace of two modules would match each module with the whole
# image), with buf.yaml's breaking rules. A release commits its own: buf build -o protos/releases/vX.Y.Z.binpb
buf-breaking: $(BUF) $(PROTODEPS)
	$(BUF) build -o build/contract.binpb
	$(BUF) breaking build/contract.binpb --against $(RELEASED_IMAGE) --config buf.yaml

# var/ holds the default database, sqlite:///var/seats.db
migrate: protos
	mkdir -p var
	$(BIN)/python -m service.server migrate $(MIGRATE_FLAGS)

run: migrate
	$(BIN)/python -m service.server serve $(SERVER_FLAGS)

lint: protos
	$(BIN)/ruff check service tests clients/python/seats bench examples
	$(BIN)/mypy

# PostgreSQL tests run when SEATS_TEST_POSTGRES_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/test).
test: protos buf-lint buf-breaking
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The rules in memory: the use cases over an in-memory fake of the store, no gRPC, no database.
test-fast: protos
	$(BIN)/python -m pytest -q tests/domain $(PYTEST_ARGS)

# The hot RPCs seen from outside: h2load (Debian nghttp2-client) against the seat server and an empty
# grpcio handler, servers on CPU 0 and h2load on CPU 1; a table, bench/results/*.json and *.png.
# BENCH_ARGS=--quick (small data set, 2 s rounds), --postgres (127.0.0.1:5432, a schema of its own), --help.
BENCH_ARGS ?=
bench: protos
	@command -v h2load >/dev/null || { echo "make bench needs h2load: apt-get install nghttp2-client"; exit 1; }
	$(BIN)/python -m bench.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build var $(GEN_DIR)/seats/v1/*_pb2*.py $(GEN_DIR)/seats/v1/*_pb2*.pyi
