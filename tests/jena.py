"""Apache Jena's command-line SPARQL clients (Debian's libapache-jena-java), run with ``java -cp``."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from servers import require_or_skip

JENA_PACKAGES = "Debian packages libapache-jena-java and default-jre-headless"
_JAVA = Path("/usr/share/java")
#: Jena 4.5 and what it needs at run time, as Debian installs them (versionless jar names).
_JARS = [
    "jena-base", "jena-core", "jena-arq", "jena-iri", "jena-cmds", "commons-lang3", "commons-io", "commons-codec",
    "commons-compress", "commons-csv", "commons-cli", "guava", "dexx.collection", "slf4j-api", "slf4j-nop", "gson",
    "jackson-core", "jackson-databind", "jackson-annotations", "httpclient", "httpcore", "commons-logging", "thrift",
    "protobuf", "titanium-json-ld", "jakarta.json-api", "jsonld-java", "httpclient-cache",
]


def classpath(workdir: Path) -> str:
    """A classpath that runs Debian's Jena, or a skip naming the packages.

    Debian's jena-core keeps its shaded Xerces classes under ``xerces.*`` but their message
    resources under ``org/apache/jena/ext/xerces/``; the classes cannot find them and Jena fails
    to start ("internal error" in XSSimpleTypeDecl). A jar that puts the resources where the
    classes look for them is built beside the classpath.
    """
    if not shutil.which("java") or not (_JAVA / "jena-arq.jar").exists():
        require_or_skip(f"Apache Jena is not installed ({JENA_PACKAGES})")
    jars = [_JAVA / f"{name}.jar" for name in _JARS]
    missing = [j.name for j in jars if not j.exists()]
    if missing:
        require_or_skip(f"Jena's dependencies are missing ({', '.join(missing)}; {JENA_PACKAGES})")
    shim = workdir / "jena-xerces-resources.jar"
    with zipfile.ZipFile(_JAVA / "jena-core.jar") as core, zipfile.ZipFile(shim, "w") as out:
        prefix = "org/apache/jena/ext/xerces/"
        for name in core.namelist():
            if name.startswith(prefix) and not name.endswith((".class", "/")):
                out.writestr("xerces/" + name[len(prefix):], core.read(name))
    return ":".join(str(j) for j in [*jars, shim])


def rsparql(cp: str, service: str, query: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``arq.rsparql --service URL --query FILE``: a remote query with Jena's HTTP client."""
    return subprocess.run(["java", "-cp", cp, "arq.rsparql", "--service", service, "--query", str(query), *extra],
                          capture_output=True, text=True, timeout=120)


def riot(cp: str, files: list[Path], *, base: str | None = None) -> subprocess.CompletedProcess[str]:
    """``riotcmd.riot --validate FILE…``: Jena's parsers read each file (syntax by its extension:
    ``.ttl``, ``.nt``, ``.rdf``; ``.jsonld`` with the JSON-LD 1.0 parser, jsonld-java, since Debian's
    Jena has no Jakarta JSON implementation for its 1.1 parser); ``base`` resolves relative IRIs.
    Both runs' output and status are joined (the status is the first that is not 0)."""
    base_args = ["--base", base] if base else []
    runs = []
    for syntax, chosen in ((None, [f for f in files if f.suffix != ".jsonld"]),
                           ("jsonld10", [f for f in files if f.suffix == ".jsonld"])):
        if chosen:
            runs.append(subprocess.run(["java", "-cp", cp, "riotcmd.riot", "--validate", *base_args,
                                        *(["--syntax", syntax] if syntax else []), *map(str, chosen)],
                                       capture_output=True, text=True, timeout=300))
    status = next((r.returncode for r in runs if r.returncode), 0)
    return subprocess.CompletedProcess(["riot"], status, "".join(r.stdout for r in runs),
                                       "".join(r.stderr for r in runs))
