"""InfluxQL queries built from the contract names, remembering what they read.

The InfluxQL counterpart of ``flux.Flux``: for InfluxDB 1.x, 3.x (Core, Enterprise) and 2.x
through its v1 API with a DBRP mapping. Every measurement, field and tag is checked against
``connectors.wire`` when the query is built. Grafana fills ``$timeFilter`` (the dashboard's
range or an alert rule's relative time range) and ``$__interval``; the database lives in the
data source alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from connectors.grafana.flux import FIELDS, TAGS, Query

__all__ = ["InfluxQLQuery", "InfluxQL", "show_tag_values"]


class InfluxQLQuery(Query):
    """An InfluxQL query."""


def _name(identifier: str) -> str:
    return f'"{identifier}"'


@dataclass(frozen=True)
class InfluxQL:
    """An immutable ``SELECT`` builder over one measurement."""

    measurement: str
    columns: tuple[str, ...] = ()
    fields: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    conditions: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    tail: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.measurement not in FIELDS:
            raise ValueError(f"unknown measurement {self.measurement!r}")
        unknown = sorted(self.fields - set(FIELDS[self.measurement]))
        if unknown:
            raise ValueError(f"{self.measurement}: unknown fields {unknown}")
        bad_tags = sorted(self.tags - set(TAGS[self.measurement]))
        if bad_tags:
            raise ValueError(f"{self.measurement} has no tags {bad_tags}")

    def field(self, name: str, fn: str | None = None, alias: str | None = None) -> InfluxQL:
        """Select field ``name``, through aggregate or selector ``fn`` if given, as ``alias``
        (default: its own name)."""
        expression = f"{fn}({_name(name)})" if fn else _name(name)
        return self.expression(expression, alias or name, name)

    def expression(self, text: str, alias: str, *fields: str) -> InfluxQL:
        """Select ``text`` (arithmetic over ``fields``) as ``alias``."""
        return replace(self, columns=(*self.columns, f"{text} AS {_name(alias)}"),
                       fields=self.fields | frozenset(fields))

    def tag(self, name: str) -> InfluxQL:
        """Select a tag as a column (beside at least one field)."""
        return replace(self, columns=(*self.columns, _name(name)), tags=self.tags | {name})

    def where(self, tag: str, value: str) -> InfluxQL:
        """Keep points whose ``tag`` equals ``value`` (a literal or a Grafana variable)."""
        return replace(self, conditions=(*self.conditions, f"{_name(tag)} = '{value}'"),
                       tags=self.tags | {tag})

    def unless(self, flag: str) -> InfluxQL:
        """Leave out points whose boolean field ``flag`` is true."""
        return replace(self, conditions=(*self.conditions, f"{_name(flag)} = false"),
                       fields=self.fields | {flag})

    def by(self, *tags: str) -> InfluxQL:
        """One series per value of ``tags``: Grafana's labels."""
        return replace(self, group_by=(*self.group_by, *map(_name, tags)), tags=self.tags | set(tags))

    def per_interval(self, fill: str = "none") -> InfluxQL:
        """Aggregate per ``$__interval`` so long ranges stay light; empty windows left out, or
        filled (``previous``: a counter that did not move)."""
        return replace(self, group_by=("time($__interval)", *self.group_by), tail=(f"fill({fill})", *self.tail))

    def newest_first(self) -> InfluxQL:
        return replace(self, tail=(*self.tail, "ORDER BY time DESC"))

    def build(self) -> InfluxQLQuery:
        if not self.fields:
            raise ValueError(f"{self.measurement}: a query selects at least one field")
        where = " AND ".join(("$timeFilter", *self.conditions))
        text = f"SELECT {', '.join(self.columns)} FROM {_name(self.measurement)} WHERE {where}"
        if self.group_by:
            text += " GROUP BY " + ", ".join(self.group_by)
        text = " ".join((text, *self.tail))
        refs = {(self.measurement, name) for name in self.fields | self.tags}
        return InfluxQLQuery(text, refs)


def show_tag_values(measurement: str, tag: str) -> InfluxQLQuery:
    """The values a tag takes, for a Grafana template variable."""
    if tag not in TAGS.get(measurement, ()):
        raise ValueError(f"{measurement} has no tag {tag!r}")
    return InfluxQLQuery(f"SHOW TAG VALUES FROM {_name(measurement)} WITH KEY = {_name(tag)}",
                         {(measurement, tag)})
