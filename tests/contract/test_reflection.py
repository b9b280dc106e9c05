"""A contract that documents itself: reflection resolves services, methods and messages and serves
the proto comments (the committed descriptor set, service/contract.binpb); --public-reflection opens
it to callers without a token; the descriptor set serves `grpcurl -protoset` when it stays closed;
`make buf-breaking` holds the protos to the contract of the last release."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service import contract
from service.auth import hash_token
from service.config import Config
from tests.contract.test_readme import block, run_shell
from tests.served import (
    CALL_SECONDS,
    COMMAND_SECONDS,
    REPO,
    ServerProcess,
    grpcurl_executable,
    json_field,
    serving,
)

TOKEN = "seats_reflection-test-token"
PROTOS = REPO / "protos"
PROTODEPS = REPO / "build" / "protodeps"
BUF = REPO / "build" / "tools" / "node_modules" / ".bin" / "buf"
SEAT_SERVICE_PROTO = PROTOS / "seats" / "v1" / "seat_service.proto"
BUF_SECONDS = 60.0
"""Bound of one `make buf-breaking` run (a build and a comparison take about a second)."""


def run_grpcurl(
    server: ServerProcess, *args: str, options: tuple[str, ...] = (), data: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    """`grpcurl -plaintext OPTIONS [-d json] ADDRESS ARGS`: the options (-H, -protoset, ...) go before the address."""
    command = [grpcurl_executable(), "-plaintext", "-connect-timeout", "5", "-max-time", str(int(CALL_SECONDS))]
    command += options
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [server.address, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False)


def succeeds(
    server: ServerProcess, *args: str, options: tuple[str, ...] = (), data: dict[str, object] | None = None
) -> str:
    done = run_grpcurl(server, *args, options=options, data=data)
    assert done.returncode == 0, f"grpcurl {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def comment_above(proto: Path, declaration: str, after: str = "") -> list[str]:
    """The lines of the `//` comment right above the first line that holds `declaration` (after
    the first line that holds `after`), as written in the .proto file."""
    lines = proto.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    at = next(i for i in range(start, len(lines)) if declaration in lines[i])
    comment: list[str] = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("//"):
            break
        comment.insert(0, line.strip().removeprefix("//").strip())
    assert comment, f"{proto.name} has no comment above {declaration!r}"
    return comment


def assert_shows_comment(described: str, comment: list[str]) -> None:
    shown = [
        line.strip().removeprefix("//").strip() for line in described.splitlines() if line.strip().startswith("//")
    ]
    for line in comment:
        assert line in shown, f"comment line {line!r} missing from:\n{described}"


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reflection-tokens") / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": "ops", "scope": "system", "sha256": hash_token(TOKEN)}]}))
    return path


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No tokens: reflection is open as every call is."""
    with serving(tmp_path_factory.mktemp("reflection-open")) as running:
        yield running


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory: pytest.TempPathFactory, tokens_file: Path) -> Iterator[ServerProcess]:
    """Tokens, reflection closed (the default)."""
    with serving(tmp_path_factory.mktemp("reflection-closed"), flags=("--auth-tokens-file", str(tokens_file))) as s:
        yield s


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory, tokens_file: Path) -> Iterator[ServerProcess]:
    """Tokens, and --public-reflection."""
    flags = ("--auth-tokens-file", str(tokens_file), "--public-reflection")
    with serving(tmp_path_factory.mktemp("reflection-public"), flags=flags) as running:
        yield running


# 1. The descriptor set and its pool.


def test_the_committed_descriptor_set_is_what_make_protos_builds(tmp_path: Path) -> None:
    assert (PROTODEPS / "google" / "type" / "money.proto").exists(), "run `make protos` first (it copies money.proto)"
    from_protoc = tmp_path / "protoc.binpb"
    protoc = subprocess.run(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTOS), "-I", str(PROTODEPS)),
            *("--include_source_info", "--include_imports", f"--descriptor_set_out={from_protoc}"),
            *sorted(str(p) for p in (PROTOS / "seats" / "v1").glob("*.proto")),
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert protoc.returncode == 0, protoc.stderr
    built = tmp_path / "contract.binpb"
    contract.build(from_protoc, built)
    assert built.read_bytes() == contract.DESCRIPTOR_SET.read_bytes(), "service/contract.binpb is stale: make protos"


def test_the_descriptor_set_holds_every_proto_and_the_services_served_alongside() -> None:
    names = {file.name for file in contract.load_descriptor_set().file}
    protos = {str(p.relative_to(PROTOS)) for p in (PROTOS / "seats" / "v1").glob("*.proto")}
    assert protos <= names, names
    assert {"grpc_health/v1/health.proto", "grpc_reflection/v1alpha/reflection.proto"} <= names, names


def test_the_descriptor_set_is_the_generated_modules_contract_plus_comments() -> None:
    """Same descriptors as before, comments added: grpcurl's JSON keeps the field names (account_id)."""
    in_set = {file.name: file for file in contract.load_descriptor_set().file}
    for module in (resources_pb2, seat_service_pb2, user_service_pb2):
        compiled = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        served = descriptor_pb2.FileDescriptorProto()
        served.CopyFrom(in_set[compiled.name])
        assert served.source_code_info.location, compiled.name
        served.ClearField("source_code_info")
        assert served == compiled, compiled.name


def test_the_pool_finds_the_file_of_every_kind_of_symbol() -> None:
    pool = contract.ContractPool(contract.load_descriptor_set().file)
    for symbol, file in (
        ("seats.v1.SeatService", "seats/v1/seat_service.proto"),
        ("seats.v1.SeatService.AssignSeat", "seats/v1/seat_service.proto"),
        (".seats.v1.SeatService.AssignSeat", "seats/v1/seat_service.proto"),
        ("seats.v1.UserService", "seats/v1/user_service.proto"),
        ("seats.v1.AssignSeatRequest", "seats/v1/seat_service.proto"),
        ("seats.v1.AssignSeatRequest.user_id", "seats/v1/seat_service.proto"),
        ("seats.v1.Hub", "seats/v1/resources.proto"),
        ("seats.v1.HUB_SALES", "seats/v1/resources.proto"),
        ("google.type.Money", "google/type/money.proto"),
        ("grpc.health.v1.Health.Check", "grpc_health/v1/health.proto"),
        ("grpc.health.v1.HealthCheckResponse.SERVING", "grpc_health/v1/health.proto"),
    ):
        assert pool.FindFileContainingSymbol(symbol).name == file, symbol
    with pytest.raises(KeyError):
        pool.FindFileContainingSymbol("seats.v1.SeatService.NoSuchMethod")
    assert pool.FindMessageTypeByName("seats.v1.AssignSeatRequest").fields_by_name["user_id"].number == 2


def test_the_pool_hands_out_files_with_their_comments_and_dependencies() -> None:
    pool = contract.ContractPool(contract.load_descriptor_set().file)
    file = pool.FindFileByName("seats/v1/seat_service.proto")
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    comments = " ".join(location.leading_comments for location in proto.source_code_info.location)
    assert " ".join(comment_above(SEAT_SERVICE_PROTO, "rpc AssignSeat(")) in " ".join(comments.split())
    assert "seats/v1/resources.proto" in {dependency.name for dependency in file.dependencies}


def test_a_set_that_names_a_file_before_its_imports_is_refused() -> None:
    files = list(contract.load_descriptor_set().file)
    seat_service = next(f for f in files if f.name == "seats/v1/seat_service.proto")
    with pytest.raises(ValueError, match="before its imports"):
        contract.ContractPool([seat_service])


def test_the_descriptor_set_ships_with_the_service_package() -> None:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = settings["package-data"]["service"]
    assert contract.DESCRIPTOR_SET.parent == REPO / "service"
    assert any(fnmatch.fnmatch(contract.DESCRIPTOR_SET.name, pattern) for pattern in patterns), patterns


def _git(directory: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@seats.test", *args],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=COMMAND_SECONDS,
    )


def test_check_generated_fails_when_the_descriptor_set_is_stale(tmp_path: Path) -> None:
    """`make check-generated` in a repository of its own: it passes as committed, and fails, naming the
    descriptor set, once a comment of a proto changed without `make protos`."""
    assert (PROTODEPS / "google" / "type" / "money.proto").exists(), "run `make protos` first (it copies money.proto)"
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(PROTOS, tmp_path / "protos")
    shutil.copytree(REPO / "service", tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "clients" / "python" / "seats" / "v1", tmp_path / "clients" / "python" / "seats" / "v1")
    shutil.copy(REPO / "clients" / "python" / "pyproject.toml", tmp_path / "clients" / "python" / "pyproject.toml")
    shutil.copytree(PROTODEPS, tmp_path / "build" / "protodeps")
    (tmp_path / ".gitignore").write_text("build/\n__pycache__/\ninstalled\n")
    (tmp_path / "installed").touch()  # the venv of the repository serves, as it is
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "as committed")

    venv = Path(sys.executable).parent.parent

    def check_generated() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "check-generated", f"VENV={venv}", "INSTALLED=installed"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=BUF_SECONDS,
            check=False,
        )

    done = check_generated()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    proto = tmp_path / "protos" / "seats" / "v1" / "seat_service.proto"
    first = comment_above(SEAT_SERVICE_PROTO, "rpc AssignSeat(")[0]
    proto.write_text(proto.read_text().replace(f"// {first}", f"// Reworded. {first}", 1))
    _git(tmp_path, "commit", "-q", "-a", "-m", "a comment changed, nothing regenerated")
    done = check_generated()
    assert done.returncode != 0, f"a stale descriptor set passed:\n{done.stdout}"
    changed = [line.split("|")[0].strip() for line in done.stdout.splitlines() if "|" in line]
    assert "service/contract.binpb" in changed, done.stdout


# 2. grpcurl over reflection.


def test_grpcurl_list_shows_the_services(open_server: ServerProcess) -> None:
    listed = set(succeeds(open_server, "list").split())
    assert {
        "seats.v1.SeatService",
        "seats.v1.UserService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= listed, listed


def test_grpcurl_describes_assign_seat_with_its_comment(open_server: ServerProcess) -> None:
    described = succeeds(open_server, "describe", "seats.v1.SeatService.AssignSeat")
    assert "seats.v1.SeatService.AssignSeat is a method:" in described, described
    assert "rpc AssignSeat ( .seats.v1.AssignSeatRequest ) returns ( .seats.v1.AssignSeatResponse );" in described
    assert_shows_comment(described, comment_above(SEAT_SERVICE_PROTO, "rpc AssignSeat("))


def test_grpcurl_describes_every_method_of_both_services(open_server: ServerProcess) -> None:
    for module in (seat_service_pb2, user_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            proto = PROTOS / module.DESCRIPTOR.name
            for method in service.methods:
                described = succeeds(open_server, "describe", method.full_name)
                assert f"{method.full_name} is a method:" in described, described
                assert_shows_comment(described, comment_above(proto, f"rpc {method.name}("))


def test_grpcurl_describes_the_fields_of_assign_seat_request_with_their_comments(open_server: ServerProcess) -> None:
    described = succeeds(open_server, "describe", "seats.v1.AssignSeatRequest")
    assert "seats.v1.AssignSeatRequest is a message:" in described, described
    assert_shows_comment(described, comment_above(SEAT_SERVICE_PROTO, "message AssignSeatRequest"))
    lines = described.splitlines()
    for field in seat_service_pb2.AssignSeatRequest.DESCRIPTOR.fields:
        declaration = f" {field.name} = {field.number};"
        comment = comment_above(SEAT_SERVICE_PROTO, declaration, after="message AssignSeatRequest ")
        at = next(i for i, line in enumerate(lines) if declaration in line)
        assert lines[at - len(comment) : at] == [f"  // {line}" for line in comment], f"{field.name}:\n{described}"


def test_grpcurl_describes_the_health_check_and_every_service(open_server: ServerProcess) -> None:
    described = succeeds(open_server, "describe", "grpc.health.v1.Health.Check")
    assert "grpc.health.v1.Health.Check is a method:" in described, described
    everything = succeeds(open_server, "describe")
    for name in ("seats.v1.SeatService", "seats.v1.UserService", "grpc.health.v1.Health"):
        assert f"{name} is a service:" in everything, everything


def test_grpcurl_prints_the_error_details_of_a_refusal(open_server: ServerProcess) -> None:
    refused = run_grpcurl(open_server, "seats.v1.SeatService/GetAccount", data={"account_id": "acc_nowhere"})
    assert refused.returncode != 0, refused.stdout
    details = [line for line in refused.stderr.splitlines() if "google.rpc.ErrorInfo" in line]
    assert details, refused.stderr
    shown = json.loads(details[0].split(")", 1)[1])
    assert shown["reason"] == "ACCOUNT_NOT_FOUND", shown
    assert "@error" not in shown, shown


def test_the_readme_contract_commands_run_as_written(open_server: ServerProcess) -> None:
    done = run_shell(block("contract-tools"), open_server.address, REPO)
    assert done.returncode == 0, f"the README's contract commands failed:\n{done.stdout}\n{done.stderr}"
    assert "seats.v1.SeatService.AssignSeat is a method:" in done.stdout
    assert_shows_comment(done.stdout, comment_above(SEAT_SERVICE_PROTO, "rpc AssignSeat("))
    assert "seats.v1.AssignSeatRequest is a message:" in done.stdout
    assert '"status": "SERVING"' in done.stdout
    assert "seats.v1.SeatService.CheckSeats is a method:" in done.stdout


# 3. With tokens: reflection closed, or --public-reflection.


def test_with_tokens_grpcurl_health_over_reflection_needs_a_token(closed_server: ServerProcess) -> None:
    refused = run_grpcurl(closed_server, "grpc.health.v1.Health/Check")
    assert refused.returncode != 0, refused.stdout
    assert "Unauthenticated" in refused.stderr, refused.stderr
    answer = json.loads(
        succeeds(closed_server, "grpc.health.v1.Health/Check", options=("-H", f"authorization: Bearer {TOKEN}"))
    )
    assert answer["status"] == "SERVING"


def test_with_tokens_the_descriptor_set_checks_health_without_a_token(closed_server: ServerProcess) -> None:
    answer = json.loads(
        succeeds(closed_server, "grpc.health.v1.Health/Check", options=("-protoset", str(contract.DESCRIPTOR_SET)))
    )
    assert answer["status"] == "SERVING"


def test_with_tokens_the_descriptor_set_or_the_protos_serve_calls_with_a_token(closed_server: ServerProcess) -> None:
    account = {
        "display_name": "Protoset",
        "owner_email": "owner@protoset.test",
        "term_months": 12,
        "subscriptions": [{"hub": "HUB_SALES", "tier": "TIER_PROFESSIONAL", "purchased_seats": 1}],
    }
    bearer = ("-H", f"authorization: Bearer {TOKEN}")
    created = json.loads(
        succeeds(
            closed_server,
            "seats.v1.SeatService/CreateAccount",
            options=(*bearer, "-protoset", str(contract.DESCRIPTOR_SET)),
            data=account,
        )
    )
    account_id = json_field(json_field(created, "account"), "account_id")
    assert account_id, created
    from_protos = ("-import-path", str(PROTOS), "-import-path", str(PROTODEPS), "-proto", "seats/v1/seat_service.proto")
    read = json.loads(
        succeeds(
            closed_server,
            "seats.v1.SeatService/GetAccount",
            options=(*bearer, *from_protos),
            data={"account_id": account_id},
        )
    )
    assert json_field(json_field(read, "account"), "account_id") == account_id, read


def test_public_reflection_checks_health_and_describes_without_a_token(public_server: ServerProcess) -> None:
    answer = json.loads(succeeds(public_server, "grpc.health.v1.Health/Check"))
    assert answer["status"] == "SERVING"
    described = succeeds(public_server, "describe", "seats.v1.SeatService.AssignSeat")
    assert "seats.v1.SeatService.AssignSeat is a method:" in described, described


def test_public_reflection_opens_nothing_else(public_server: ServerProcess) -> None:
    refused = run_grpcurl(public_server, "seats.v1.SeatService/GetAccount", data={"account_id": "acc_x"})
    assert refused.returncode != 0, refused.stdout
    assert "Unauthenticated" in refused.stderr, refused.stderr


def test_public_reflection_is_off_by_default_and_set_by_flag_or_environment() -> None:
    assert Config().public_reflection is False
    assert Config.parse(["serve"], env={})[1].public_reflection is False
    assert Config.parse(["serve", "--public-reflection"], env={})[1].public_reflection is True
    assert Config.parse(["serve"], env={"SEATS_PUBLIC_REFLECTION": "true"})[1].public_reflection is True


# 4. buf breaking against the last release.


def _protos_copy(directory: Path) -> Path:
    """protos/, buf.yaml and build/protodeps in a directory of their own."""
    assert BUF.exists(), "buf is not installed: make build/tools/node_modules/.bin/buf"
    assert (PROTODEPS / "google" / "type" / "money.proto").exists(), "run `make protos` first (it copies money.proto)"
    shutil.copytree(PROTOS, directory / "protos")
    shutil.copy(REPO / "buf.yaml", directory / "buf.yaml")
    shutil.copytree(PROTODEPS, directory / "build" / "protodeps")
    return directory


def buf_breaking(directory: Path) -> subprocess.CompletedProcess[str]:
    """`make buf-breaking` in `directory` (the Makefile of the repository, its buf)."""
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(directory),
            "-f",
            str(REPO / "Makefile"),
            "buf-breaking",
            f"BUF={BUF}",
            "PROTODEPS=",
        ],
        capture_output=True,
        text=True,
        timeout=BUF_SECONDS,
        check=False,
    )


def _edit(proto: Path, old: str, new: str) -> None:
    text = proto.read_text()
    assert old in text, f"{old!r} not in {proto.name}"
    proto.write_text(text.replace(old, new, 1))


def test_buf_breaking_passes_on_the_protos_and_on_an_added_field(tmp_path: Path) -> None:
    copy = _protos_copy(tmp_path)
    done = buf_breaking(copy)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    request = copy / "protos" / "seats" / "v1" / "seat_service.proto"
    _edit(request, "  string request_id = 6;\n}", "  string request_id = 6;\n  // Added.\n  string note = 99;\n}")
    done = buf_breaking(copy)
    assert done.returncode == 0, f"an added field is no breaking change:\n{done.stdout}\n{done.stderr}"


def test_buf_breaking_fails_on_a_renumbered_field(tmp_path: Path) -> None:
    copy = _protos_copy(tmp_path)
    _edit(copy / "protos" / "seats" / "v1" / "seat_service.proto", "string user_id = 2;", "string user_id = 7;")
    done = buf_breaking(copy)
    assert done.returncode != 0, f"a renumbered field passed buf breaking:\n{done.stdout}"
    assert (
        'Previously present field "2" with name "user_id" on message "AssignSeatRequest"' in done.stdout + done.stderr
    )
