from django.core.management import call_command


def test_openapi_schema_builds_without_warnings(db, tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/me/" in out.read_text()
