"""The supervisors' dashboard: the assistant's metrics as a page of the desk, with charts drawn on the server.

Nothing is computed here: the figures are ``credia.analytics.metrics.build_report``'s, for the filters of the
page's GET form, so the page always shows what ``python -m credia.analytics report`` prints. Every figure carries
``data-metric`` (its dotted path in the report's JSON) and ``data-value`` (the raw value), so a test or a script
reads the page as exactly as the report. Charts are inline SVG bars (no CDN, nothing for the CSP to allow) with a
title, a description and the values written next to the bars, so a screen reader and the DOM get the numbers.
Each section is a ``data-live`` region: ``desk.js`` fetches the page every ``REFRESH_SECONDS`` and swaps only the
sections whose figures changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from credia.analytics.metrics import Filters, build_report
from credia.analytics.report import duration
from credia.analytics.sessions import JOURNEYS, TrackerStoreError
from credia.desk.pages import CHANNEL_LABELS, METRICS_PATH, Page
from credia.desk.service import Viewer
from credia.identity import country_profile
from credia.money import format_money

REFRESH_SECONDS = 15
MAX_FILTER_LENGTH = 40
JOURNEY_LABELS = {
    "credit": "Solicitud de crédito",
    "simulation": "Simulación de préstamo",
    "status": "Estado de solicitud",
    "collections": "Cobranza",
}
OUTCOME_LABELS = {
    "pre_approved": "Preaprobada",
    "counter_offer": "Contraoferta",
    "referred": "Derivada a un asesor",
    "declined": "No aprobada",
}
FORM_LABELS = {
    "credit_application_form": "Solicitud de crédito",
    "simulation_form": "Simulación",
    "application_status_form": "Consulta de estado",
    "verification_form": "Verificación de identidad",
    "promise_form": "Promesa de pago",
    "payment_claim_form": "Pago no encontrado",
}
# Bar chart geometry (SVG user units; the chart scales to its container).
CHART_WIDTH, LABEL_WIDTH, BAR_SPACE, ROW_HEIGHT, BAR_HEIGHT = 640, 230, 330, 28, 18


class FilterError(ValueError):
    """A filter of the page's form that cannot be used; the message says why, in Spanish."""


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The form's fields (``from``, ``to``, ``channel``, ``journey``; empty means all) as report filters."""
    values = {name: (params.get(name) or "").strip() for name in ("from", "to", "channel", "journey")}
    for name, value in values.items():
        if len(value) > MAX_FILTER_LENGTH:
            raise FilterError(f"El filtro «{name}» es demasiado largo.")
    start, end = _day(values["from"], "Desde"), _day(values["to"], "Hasta")
    if start and end and start > end:
        raise FilterError("La fecha «Desde» es posterior a la fecha «Hasta».")
    channel, journey = values["channel"] or None, values["journey"] or None
    if channel is not None and channel not in CHANNEL_LABELS:
        raise FilterError(f"No hay un canal «{channel}». Elija uno de la lista.")
    if journey is not None and journey not in JOURNEYS:
        raise FilterError(f"No hay un recorrido «{journey}». Elija uno de la lista.")
    return Filters(start=start, end=end, channel=channel, journey=journey)


def _day(value: str, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"La fecha «{label}» no es válida: escríbala como AAAA-MM-DD (por ejemplo 2025-07-31).") \
            from None


def render(
    page: Page, viewer: Viewer, params: Mapping[str, str], tracker_url: str, core_banking_url: str | None
) -> tuple[int, str]:
    """The page and its status: 200 with the figures, 400 for a filter that cannot be used, 503 when the
    tracker store cannot be read (the page then says why, instead of failing)."""
    try:
        filters = parse_filters(params)
    except FilterError as exc:
        return 400, _layout(page, viewer, params, _alert(str(exc)))
    try:
        report = build_report(tracker_url, filters, core_banking_url=core_banking_url)
    except TrackerStoreError as exc:
        message = f"No se pudo leer el registro de conversaciones del asistente. Detalle técnico: {exc}"
        return 503, _layout(page, viewer, params, _alert(message))
    return 200, _layout(page, viewer, params, _figures(page, report))


def _layout(page: Page, viewer: Viewer, params: Mapping[str, str], body: str) -> str:
    main = (
        f'<div class="dashboard" data-refresh-seconds="{REFRESH_SECONDS}"><h1>Métricas del asistente</h1>'
        f"{_filter_form(params)}{body}</div>"
    )
    return page.layout("Métricas", main, viewer, METRICS_PATH)


def _alert(message: str) -> str:
    return f'<p class="alert" role="alert">{escape(message)}</p>'


def _filter_form(params: Mapping[str, str]) -> str:
    def value(name: str) -> str:
        return escape((params.get(name) or "")[:MAX_FILTER_LENGTH])

    def options(choices: Mapping[str, str], chosen: str) -> str:
        return '<option value="">Todos</option>' + "".join(
            f'<option value="{escape(code)}"{" selected" if code == chosen else ""}>{escape(label)}</option>'
            for code, label in choices.items()
        )

    journeys = {code: JOURNEY_LABELS.get(code, code) for code in JOURNEYS}
    return (
        f'<form method="get" action="{METRICS_PATH}" class="filters" aria-label="Filtros">'
        f'<div><label for="f-from">Desde</label><input id="f-from" name="from" type="date" value="{value("from")}">'
        "</div>"
        f'<div><label for="f-to">Hasta</label><input id="f-to" name="to" type="date" value="{value("to")}"></div>'
        f'<div><label for="f-channel">Canal</label><select id="f-channel" name="channel">'
        f'{options(CHANNEL_LABELS, params.get("channel") or "")}</select></div>'
        f'<div><label for="f-journey">Recorrido</label><select id="f-journey" name="journey">'
        f'{options(journeys, params.get("journey") or "")}</select></div>'
        f'<div class="filter-actions"><button type="submit" class="primary">Aplicar</button> '
        f'<a href="{METRICS_PATH}">Quitar filtros</a></div></form>'
    )


# --- figures -------------------------------------------------------------------------------------------------


def metric(path: str, value: Any, text: str | None = None, tag: str = "span") -> str:
    """One figure: shown as ``text``, with its path in the report and its raw value for machines."""
    raw = value if isinstance(value, str) else json.dumps(value)
    shown = escape(text if text is not None else _number(value))
    return f'<{tag} data-metric="{escape(path)}" data-value="{escape(raw)}">{shown}</{tag}>'


def _number(value: Any) -> str:
    return "—" if value is None else str(value)


def percent(rate: float | None) -> str:
    """``0.125`` → ``12,5 %`` (Spanish decimal comma); ``—`` when there is nothing to divide by."""
    return "—" if rate is None else f"{rate * 100:.1f} %".replace(".", ",")


def _ratio(path: str, figures: Mapping[str, Any], of_what: str = "") -> str:
    """A rate in large type, and "count de of" under it."""
    return (
        f'<p class="figure">{metric(f"{path}.rate", figures["rate"], percent(figures["rate"]))}</p>'
        f'<p class="hint">{metric(f"{path}.count", figures["count"])} de {metric(f"{path}.of", figures["of"])}'
        f"{escape(of_what)}</p>"
    )


def _card(title: str, inner: str) -> str:
    return f'<div class="metric-card"><h3>{escape(title)}</h3>{inner}</div>'


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float, str]]) -> str:
    """Horizontal bars, one per (label, value, shown text), scaled to the largest value; the labels and values
    are SVG text and the description lists them, so the chart reads without seeing it."""
    if not bars:
        return '<p class="empty">Sin datos para este gráfico.</p>'
    largest = max(value for _, value, _ in bars) or 1
    height = ROW_HEIGHT * len(bars) + 4
    rows = []
    for index, (label, value, text) in enumerate(bars):
        top = index * ROW_HEIGHT + 4
        width = round(BAR_SPACE * value / largest, 1)
        middle = top + BAR_HEIGHT / 2
        rows.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{middle}" class="chart-label" text-anchor="end" '
            f'dominant-baseline="middle">{escape(_short(label))}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{top}" width="{width}" height="{BAR_HEIGHT}" rx="3" class="chart-bar">'
            f"<title>{escape(label)}: {escape(text)}</title></rect>"
            f'<text x="{LABEL_WIDTH + width + 6}" y="{middle}" class="chart-value" '
            f'dominant-baseline="middle">{escape(text)}</text>'
        )
    description = "; ".join(f"{label}: {text}" for label, _, text in bars)
    return (
        f'<svg class="chart" id="{chart_id}" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" width="{CHART_WIDTH}" height="{height}" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
        f'{"".join(rows)}</svg>'
    )


def _short(label: str, limit: int = 30) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _table(caption: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(cell)}</th>' for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        f'<table><caption class="visually-hidden">{escape(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _figures(page: Page, report: dict[str, Any]) -> str:
    sections = [
        ("summary", _summary(report)),
        ("handoffs", _handoffs(page, report["handoff"])),
        ("journeys", _journeys(report["journeys"])),
        ("forms", _forms(page, report["forms"])),
        ("nlu", _nlu(report["nlu"])),
        ("collections", _collections(report["collections"])),
        ("credit", _credit(report["credit"])),
    ]
    zone = ZoneInfo(report["filters"]["time_zone"])
    updated = datetime.now(zone).strftime("%d/%m/%Y %H:%M:%S")
    stamp = page.live(
        "updated", f'<p class="hint">Actualizado el {updated}; se actualiza solo cada {REFRESH_SECONDS} s.</p>',
        tag="div",
    )
    return stamp + "".join(page.live(f"metrics-{name}", inner) for name, inner in sections)


def _summary(report: dict[str, Any]) -> str:
    cards = [
        _card("Sesiones", f'<p class="figure">{metric("sessions", report["sessions"])}</p>'
                          '<p class="hint">en que el cliente escribió</p>'),
        _card("Contención", _ratio("containment", report["containment"], " sin traspaso a una persona")),
        _card("Resolución automática",
              _ratio("automatic_resolution", report["automatic_resolution"], " lograron su objetivo solas")),
        _card("Traspasos a una persona", _ratio("handoff", report["handoff"])),
        _card("Abandono", _ratio("abandonment", report["abandonment"], " que empezaron un recorrido")),
    ]
    return f'<h2>Resumen</h2><div class="metric-cards">{"".join(cards)}</div>'


def _handoffs(page: Page, handoff: dict[str, Any]) -> str:
    reasons = handoff["by_reason"]
    bars = [(page.policy.reasons.get(code, code), count, str(count)) for code, count in reasons.items()]
    rows = [[page.reason(code), metric(f"handoff.by_reason.{code}", count)] for code, count in reasons.items()]
    table = _table("Traspasos por motivo", ["Motivo", "Sesiones"], rows) if rows else ""
    return "<h2>Traspasos por motivo</h2>" + bar_chart("chart-handoffs", "Traspasos por motivo", bars) + table


def _journeys(journeys: dict[str, Any]) -> str:
    bars, rows = [], []
    for code, figures in journeys.items():
        label = JOURNEY_LABELS.get(code, code)
        rate, times = figures["completion_rate"], figures["completion_seconds"]
        bars.append((label, rate or 0.0, percent(rate)))
        path = f"journeys.{code}"
        rows.append([
            escape(label), metric(f"{path}.started", figures["started"]),
            metric(f"{path}.completed", figures["completed"]),
            metric(f"{path}.completion_rate", rate, percent(rate)),
            metric(f"{path}.completion_seconds.median", times["median"], duration(times["median"])),
            metric(f"{path}.completion_seconds.p90", times["p90"], duration(times["p90"])),
        ])
    return (
        "<h2>Recorridos</h2>" + bar_chart("chart-journeys", "Tasa de finalización por recorrido", bars)
        + _table("Recorridos: inicio, finalización y tiempos",
                 ["Recorrido", "Iniciados", "Completados", "Tasa de finalización", "Tiempo mediano", "Tiempo p90"],
                 rows)
    )


def _forms(page: Page, forms: dict[str, Any]) -> str:
    if not forms:
        return '<h2>Formularios: dónde abandonan</h2><p class="empty">Ningún formulario empezado.</p>'
    parts = ["<h2>Formularios: dónde abandonan</h2>"]
    for form, funnel in forms.items():
        label = FORM_LABELS.get(form, form)
        names = page.policy.captured_values
        steps = funnel["fields"]
        bars = [(names.get(step["field"], step["field"]), step["asked"], str(step["asked"])) for step in steps]
        rows = [
            [
                metric(f"forms.{form}.fields.{index}.field", step["field"], names.get(step["field"], step["field"])),
                metric(f"forms.{form}.fields.{index}.asked", step["asked"]),
                metric(f"forms.{form}.fields.{index}.stopped", step["stopped"]),
            ]
            for index, step in enumerate(funnel["fields"])
        ]
        parts.append(
            f"<h3>{escape(label)}</h3>"
            f"<p>Sesiones en que se preguntó: {metric(f'forms.{form}.sessions', funnel['sessions'])}"
            f"; abandonadas en él: {metric(f'forms.{form}.abandoned', funnel['abandoned'])}.</p>"
            + bar_chart(f"chart-form-{form}", f"{label}: sesiones a las que se preguntó cada dato", bars)
            + _table(f"{label}: embudo por dato", ["Dato", "Sesiones preguntadas", "Abandonaron aquí"], rows)
        )
    return "".join(parts)


def _nlu(nlu: dict[str, Any]) -> str:
    threshold = nlu["threshold"]
    cards = [
        _card("Mensajes de clientes", f'<p class="figure">{metric("nlu.messages", nlu["messages"])}</p>'),
        _card("No entendidos", _ratio("nlu.not_understood", nlu["not_understood"])),
        _card(f"Confianza baja (< {threshold:g})", _ratio("nlu.low_confidence", nlu["low_confidence"])
              + f'<p class="hint">umbral {metric("nlu.threshold", threshold)}</p>'),
    ]
    top = nlu["top_not_understood"]
    bars = [(item["text"], item["count"], str(item["count"])) for item in top]
    rows = [
        [metric(f"nlu.top_not_understood.{index}.text", item["text"]),
         metric(f"nlu.top_not_understood.{index}.count", item["count"])]
        for index, item in enumerate(top)
    ]
    table = _table("Mensajes no entendidos más frecuentes", ["Mensaje", "Veces"], rows) if rows else ""
    return (
        f'<h2>Comprensión (NLU)</h2><div class="metric-cards">{"".join(cards)}</div>'
        "<h3>Mensajes no entendidos más frecuentes</h3>"
        + bar_chart("chart-not-understood", "Mensajes no entendidos más frecuentes", bars) + table
    )


def _collections(collections: dict[str, Any]) -> str:
    profile = country_profile()
    paid = collections["links_paid"]
    amount = format_money(paid["amount"], profile.currency, profile.locale)
    cards = [
        _card("Contactos verificados",
              f'<p class="figure">{metric("collections.verified_contacts", collections["verified_contacts"])}</p>'),
        _card("Promesas de pago", f'<p class="figure">{metric("collections.promises", collections["promises"])}</p>'),
        _card("Tasa de promesa de pago",
              _ratio("collections.promise_to_pay_rate", collections["promise_to_pay_rate"], " contactos verificados")),
        _card("Promesas cumplidas", _kept(collections["promise_kept"])),
        _card("Enlaces de pago enviados",
              f'<p class="figure">{metric("collections.links_sent", collections["links_sent"])}</p>'),
        _card("Enlaces pagados",
              f'<p class="figure">{metric("collections.links_paid.count", paid["count"])}</p>'
              f'<p class="hint">por {metric("collections.links_paid.amount", paid["amount"], amount)}</p>'),
        _card("Planes de pago creados",
              f'<p class="figure">{metric("collections.plans_created", collections["plans_created"])}</p>'),
    ]
    return f'<h2>Cobranza</h2><div class="metric-cards">{"".join(cards)}</div>'


def _kept(figures: dict[str, Any]) -> str:
    """Core banking's promise-kept rate, or that it is unavailable and why."""
    path = "collections.promise_kept"
    if not figures.get("available"):
        return (
            f'<p class="figure">{metric(f"{path}.available", False, "No disponible")}</p>'
            f'<p class="hint">{metric(f"{path}.reason", figures.get("reason", ""))}</p>'
        )
    return (
        f'<div hidden>{metric(f"{path}.available", True, "disponible")}</div>'
        + _ratio(path, figures, " promesas vencidas")
        + f'<p class="hint">{metric(f"{path}.broken", figures["broken"])} incumplidas, '
        f'{metric(f"{path}.pending", figures["pending"])} por vencer</p>'
    )


def _credit(credit: dict[str, Any]) -> str:
    outcomes = credit["applications_by_outcome"]
    bars = [(OUTCOME_LABELS.get(code, code), count, str(count)) for code, count in outcomes.items()]
    rows = [
        [escape(OUTCOME_LABELS.get(code, code)), metric(f"credit.applications_by_outcome.{code}", count)]
        for code, count in outcomes.items()
    ]
    rows.append(["Contraofertas aceptadas después",
                 metric("credit.counter_offers_accepted", credit["counter_offers_accepted"])])
    return (
        "<h2>Solicitudes de crédito</h2>"
        + bar_chart("chart-credit", "Solicitudes de crédito por resultado de la preevaluación", bars)
        + _table("Solicitudes por resultado", ["Resultado", "Solicitudes"], rows)
    )
