"""Technology names the offline recognizer tags TECH (its NER pipeline has no such type)."""

from __future__ import annotations

__all__ = ["CASE_SENSITIVE_TECH", "TECH_TERMS"]

TECH_TERMS = (
    *("Kubernetes", "Docker", "Terraform", "Ansible", "Helm", "Podman", "Nomad", "Vagrant", "OpenShift"),
    *("PostgreSQL", "Postgres", "MySQL", "MariaDB", "SQLite", "MongoDB", "Redis", "Cassandra", "DynamoDB"),
    *("Elasticsearch", "OpenSearch", "ClickHouse", "Snowflake", "BigQuery", "Kafka", "RabbitMQ", "Airflow"),
    *("JavaScript", "TypeScript", "Kotlin", "Scala", "Haskell", "Elixir", "Erlang", "Clojure", "Fortran"),
    *("COBOL", "Golang", "C++", "C#", "PHP", "Perl", "Lua", "Julia", "MATLAB", "Dart", "Zig", "OCaml"),
    *("React", "Vue", "Angular", "Svelte", "Next.js", "Node.js", "Deno", "Django", "FastAPI", "Rails"),
    *("Spring Boot", "Laravel", ".NET", "PyTorch", "TensorFlow", "Keras", "NumPy", "pandas", "scikit-learn"),
    *("Linux", "Ubuntu", "Debian", "FreeBSD", "Windows", "macOS", "Android", "iOS", "Git", "GitHub"),
    *("GitLab", "Jenkins", "AWS", "Azure", "GCP", "Lambda", "Prometheus", "Grafana", "OpenTelemetry"),
    *("GraphQL", "gRPC", "WebAssembly", "LangChain", "LangGraph", "Hadoop", "Excel", "Figma", "Unity"),
    *("Unreal Engine", "Blender", "Arduino", "Raspberry Pi", "Jupyter", "Tableau", "Power BI", "Salesforce"),
    *("SAP", "Oracle Database", "Nginx", "Apache Spark", "Spark", "Flask", "Python", "Rust", "Java", "Ruby"),
    *("Swift", "Bash", "HTML", "CSS", "SQL", "NoSQL", "Vim", "Emacs", "VS Code", "Neovim"),
)
"""Matched in any case, except CASE_SENSITIVE_TECH."""

CASE_SENSITIVE_TECH = frozenset(
    {"Python", "Rust", "Java", "Ruby", "Swift", "Spark", "Flask", "Rails", "React", "Vue"}
    | {"Lambda", "Unity", "Excel", "Helm", "Nomad", "Git", "Julia", "Dart", "Zig", "Bash", "Windows"}
    | {"Angular", "SAP", "Lua", "Perl", "pandas", "Keras", "Deno", "Linux", "Android", "Blender", "Debian"}
)
"""Names that are also ordinary words (a python, rust, to excel): matched only as written here. One-letter
names (C, R) and Go are left out: "Go ahead" or "plan C" would be technologies."""
