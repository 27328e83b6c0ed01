"""The console's pages: server-rendered HTML in Spanish, usable with a keyboard and a screen reader.

Every page works without JavaScript (forms post and come back); ``desk.js`` adds live updates. Regions that
change live carry ``data-live`` and a ``data-version`` (a hash of their content), so the script swaps only the
regions that changed and never a form the agent is typing in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from html import escape
from typing import Any, Dict, Iterable, Optional, Sequence
from zoneinfo import ZoneInfo

from credia.db import utcnow
from credia.desk.models import DeliveryStatus, Handoff, HandoffStatus, Message, MessageKind, OutboxItem, Ticket
from credia.desk.policy import CALLBACK_OUTCOME, DeskPolicy
from credia.desk.service import AgentLoad, Viewer, can_act

PRIORITY_LABELS = {"urgent": "Urgente", "high": "Alta", "normal": "Normal"}
STATUS_LABELS = {"queued": "En espera", "assigned": "En atención", "resolved": "Resuelta"}
ROLE_LABELS = {"agent": "agente", "supervisor": "supervisor(a)"}
CHANNEL_LABELS = {
    "socketio": "Chat web", "rest": "API (REST)", "whatsapp": "WhatsApp", "twilio_messaging": "SMS / WhatsApp (Twilio)",
    "twilio_voice": "Teléfono",
}
KIND_LABELS = {MessageKind.CUSTOMER.value: "Cliente", MessageKind.BOT.value: "Asistente"}
TICKET_KINDS = {"callback": "Llamada", "ticket": "Mensaje"}
CURRENT = ' aria-current="page"'
DELIVERY_KINDS = {"reply": "Respuesta", "resume": "Reactivar al asistente", "handback": "Devolver al asistente"}
METRICS_PATH = "/console/metrics"  # the supervisors' dashboard (credia/desk/dashboard.py)


class Page:
    """Formats for one desk: times in the desk's time zone, labels from the policy."""

    def __init__(self, policy: DeskPolicy) -> None:
        self.policy = policy
        self.zone = ZoneInfo(policy.business_hours.countries[policy.business_hours.default_country].timezone)

    # --- small pieces ---------------------------------------------------------------------------------------

    def time(self, moment: Optional[datetime], with_date: bool = False) -> str:
        if moment is None:
            return ""
        local = moment.astimezone(self.zone)
        text = local.strftime("%d/%m/%Y %H:%M" if with_date else "%H:%M")
        return f'<time datetime="{local.isoformat()}">{text}</time>'

    @staticmethod
    def waiting(since: datetime) -> str:
        minutes = int((utcnow() - since).total_seconds() // 60)
        if minutes < 1:
            return "menos de 1 min"
        if minutes < 60:
            return f"{minutes} min"
        return f"{minutes // 60} h {minutes % 60:02d} min"

    def reason(self, code: str) -> str:
        return escape(self.policy.reasons.get(code, code))

    def journey(self, code: Optional[str]) -> str:
        return escape(self.policy.journeys.get(code, code)) if code else "—"

    @staticmethod
    def customer_name(handoff: Handoff) -> str:
        return escape((handoff.customer or {}).get("name") or "Cliente sin identificar")

    @staticmethod
    def priority(code: str) -> str:
        return f'<span class="badge priority-{escape(code)}">{PRIORITY_LABELS.get(code, escape(code))}</span>'

    @staticmethod
    def status(code: str) -> str:
        return f'<span class="badge status-{escape(code)}">{STATUS_LABELS.get(code, escape(code))}</span>'

    @staticmethod
    def channel(code: str) -> str:
        return escape(CHANNEL_LABELS.get(code, code))

    @staticmethod
    def csrf(viewer: Viewer) -> str:
        return f'<input type="hidden" name="csrf" value="{escape(viewer.csrf_token)}">'

    def form(self, viewer: Viewer, action: str, inner: str, label: Optional[str] = None, cls: str = "") -> str:
        labelled = f' aria-label="{escape(label)}"' if label else ""
        return (
            f'<form method="post" action="{escape(action)}" data-async class="{cls}"{labelled}>{self.csrf(viewer)}'
            f'{inner}<p class="form-error" role="alert" hidden></p></form>'
        )

    @staticmethod
    def live(region_id: str, inner: str, tag: str = "section", attrs: str = "") -> str:
        version = hashlib.sha256(inner.encode()).hexdigest()[:16]
        return f'<{tag} id="{region_id}" data-live data-version="{version}"{attrs}>{inner}</{tag}>'

    # --- layout ---------------------------------------------------------------------------------------------

    def layout(self, title: str, main: str, viewer: Optional[Viewer] = None, current: str = "") -> str:
        header = ""
        if viewer is not None:
            links = [("/console", "Conversaciones"), ("/console/tickets", "Llamadas y mensajes")]
            if viewer.is_supervisor:
                links.append((METRICS_PATH, "Métricas"))
            nav = "".join(f'<a href="{href}"{CURRENT if current == href else ""}>{label}</a>' for href, label in links)
            state = "Disponible" if viewer.available else "En pausa"
            toggle = self.form(
                viewer,
                "/console/presence",
                f'<input type="hidden" name="available" value="{"0" if viewer.available else "1"}">'
                f'<span class="presence presence-{"on" if viewer.available else "off"}">{state}</span> '
                f'<button type="submit" class="link">{"Pausar" if viewer.available else "Estoy disponible"}</button>',
                label="Disponibilidad",
                cls="inline",
            )
            header = (
                '<header class="topbar"><p class="brand">Credia · Mesa de agentes</p>'
                f'<nav aria-label="Secciones">{nav}</nav>'
                f'<div class="who">{self.live("presence", toggle, tag="div")}<span>{escape(viewer.display_name)} '
                f'({ROLE_LABELS.get(viewer.role, viewer.role)})</span>'
                f'<form method="post" action="/logout" class="inline">{self.csrf(viewer)}'
                '<button type="submit" class="link">Cerrar sesión</button></form></div></header>'
            )
        return (
            '<!doctype html>\n<html lang="es"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} · Mesa de agentes</title>"
            '<link rel="stylesheet" href="/assets/desk.css">'
            + ('<script src="/assets/desk.js" defer></script>' if viewer is not None else "")
            + '</head><body><a class="skip" href="#main">Saltar al contenido</a>'
            f'{header}<div id="announcer" class="visually-hidden" role="status" aria-live="polite"></div>'
            f'<main id="main" tabindex="-1">{main}</main></body></html>'
        )

    # --- login ----------------------------------------------------------------------------------------------

    def login(self, error: Optional[str] = None, next_path: str = "", username: str = "") -> str:
        alert = f'<p class="alert" role="alert">{escape(error)}</p>' if error else ""
        main = (
            '<div class="login"><h1>Mesa de agentes</h1><p>Ingrese con su usuario del equipo de atención.</p>'
            f'{alert}<form method="post" action="/login">'
            f'<input type="hidden" name="next" value="{escape(next_path)}">'
            '<label for="username">Usuario</label>'
            f'<input id="username" name="username" autocomplete="username" required value="{escape(username)}">'
            '<label for="password">Contraseña</label>'
            '<input id="password" name="password" type="password" autocomplete="current-password" required>'
            '<button type="submit">Ingresar</button></form></div>'
        )
        return self.layout("Ingresar", main)

    def error(self, message: str, viewer: Optional[Viewer] = None) -> str:
        main = f'<h1>No se pudo completar</h1><p class="alert" role="alert">{escape(message)}</p>' \
               '<p><a href="/console">Volver a las conversaciones</a></p>'
        return self.layout("Error", main, viewer)

    # --- the console: queue, own and all conversations, agents ---------------------------------------------

    def console(
        self,
        viewer: Viewer,
        queue: Sequence[Handoff],
        active: Sequence[Handoff],
        resolved: Sequence[Handoff],
        loads: Sequence[AgentLoad],
    ) -> str:
        limit = self.policy.queue.max_open_per_agent
        mine = sum(1 for handoff in active if handoff.agent_id == viewer.agent_id)
        parts = [
            "<h1>Conversaciones</h1>",
            self.live("queue", self._queue(viewer, queue, loads)),
            self.live(
                "active",
                self._conversations(
                    "Todas las conversaciones en atención" if viewer.is_supervisor
                    else f"Mis conversaciones ({mine} de {limit})",
                    active, show_agent=viewer.is_supervisor, empty="No hay conversaciones en atención.",
                ),
            ),
        ]
        if viewer.is_supervisor:
            parts.append(self.live("agents", self._agents(loads)))
        parts.append(
            self.live(
                "resolved",
                self._conversations("Resueltas recientemente", resolved, show_agent=viewer.is_supervisor,
                                    empty="Aún no hay conversaciones resueltas.", resolved=True),
            )
        )
        return self.layout("Conversaciones", "".join(parts), viewer, "/console")

    def _queue(self, viewer: Viewer, queue: Sequence[Handoff], loads: Sequence[AgentLoad]) -> str:
        heading = f'<h2>En espera <span class="count">({len(queue)})</span></h2>'
        if not queue:
            return heading + '<p class="empty">No hay clientes esperando.</p>'
        rows = []
        for position, handoff in enumerate(queue, 1):
            actions = self.form(
                viewer, f"/console/conversations/{handoff.id}/claim",
                '<button type="submit">Tomar</button>', label=f"Tomar la conversación {position}", cls="inline",
            )
            if viewer.is_supervisor:
                actions += self.form(
                    viewer, f"/console/conversations/{handoff.id}/assign",
                    self._agent_picker(f"assign-{handoff.id}", "Asignar a", loads, None, online_only=True),
                    label=f"Asignar la conversación {position}", cls="inline",
                )
            rows.append(
                f'<tr><td>{position}</td><td>{self.priority(handoff.priority)}</td>'
                f'<td><a href="/console/conversations/{handoff.id}">{self.customer_name(handoff)}</a>'
                f'{self._verified_mark(handoff)}</td>'
                f"<td>{self.reason(handoff.reason)}</td><td>{self.channel(handoff.channel)}</td>"
                f"<td>{self.waiting(handoff.created_at)} (desde {self.time(handoff.created_at)})</td>"
                f'<td class="actions">{actions}</td></tr>'
            )
        return (
            heading + '<table class="queue"><caption class="visually-hidden">Clientes en espera, por prioridad y '
            'tiempo de espera</caption><thead><tr><th scope="col">#</th><th scope="col">Prioridad</th>'
            '<th scope="col">Cliente</th><th scope="col">Motivo</th><th scope="col">Canal</th>'
            '<th scope="col">Esperando</th><th scope="col">Acciones</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
        )

    @staticmethod
    def _verified_mark(handoff: Handoff) -> str:
        if (handoff.customer or {}).get("verified"):
            return ' <span class="badge verified">Verificado</span>'
        return ' <span class="badge unverified">No verificado</span>'

    def _conversations(
        self, title: str, handoffs: Sequence[Handoff], show_agent: bool, empty: str, resolved: bool = False
    ) -> str:
        heading = f"<h2>{escape(title)}</h2>"
        if not handoffs:
            return heading + f'<p class="empty">{escape(empty)}</p>'
        rows = []
        for handoff in handoffs:
            agent = f"<td>{escape(handoff.agent.display_name) if handoff.agent else '—'}</td>" if show_agent else ""
            when = self.time(handoff.resolved_at if resolved else handoff.assigned_at, with_date=resolved)
            extra = (
                f"<td>{escape(self.policy.outcomes.get(handoff.outcome or '', handoff.outcome or ''))}</td>"
                f"<td>{handoff.survey_rating or '—'}</td>"
                if resolved else f"<td>{self.priority(handoff.priority)}</td>"
            )
            rows.append(
                f'<tr><td><a href="/console/conversations/{handoff.id}">{self.customer_name(handoff)}</a></td>'
                f"<td>{self.reason(handoff.reason)}</td><td>{self.channel(handoff.channel)}</td>{agent}"
                f"<td>{when}</td>{extra}</tr>"
            )
        agent_head = '<th scope="col">Agente</th>' if show_agent else ""
        tail = '<th scope="col">Resultado</th><th scope="col">Encuesta</th>' if resolved else \
            '<th scope="col">Prioridad</th>'
        return (
            heading + '<table><thead><tr><th scope="col">Cliente</th><th scope="col">Motivo</th>'
            f'<th scope="col">Canal</th>{agent_head}<th scope="col">{"Resuelta" if resolved else "Desde"}</th>'
            f'{tail}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )

    def _agents(self, loads: Sequence[AgentLoad]) -> str:
        limit = self.policy.queue.max_open_per_agent
        rows = "".join(
            f"<tr><td>{escape(load.agent.display_name)}</td><td>{ROLE_LABELS.get(load.agent.role, '')}</td>"
            f'<td><span class="presence presence-{"on" if load.online else "off"}">'
            f'{"Conectado(a)" if load.online else "Desconectado(a) o en pausa"}</span></td>'
            f"<td>{load.open_count} de {limit}</td></tr>"
            for load in loads
        )
        return (
            '<h2>Equipo</h2><table><thead><tr><th scope="col">Nombre</th><th scope="col">Rol</th>'
            '<th scope="col">Estado</th><th scope="col">Conversaciones abiertas</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )

    def _agent_picker(
        self, field_id: str, label: str, loads: Sequence[AgentLoad], exclude: Optional[int], online_only: bool = False
    ) -> str:
        """A labelled list of agents (those at their limit shown but not selectable) and the button."""
        limit = self.policy.queue.max_open_per_agent
        options = []
        for load in loads:
            if load.agent.id == exclude or (online_only and not load.online):
                continue
            full = load.open_count >= limit
            state = "conectado(a)" if load.online else "desconectado(a)"
            options.append(
                f'<option value="{load.agent.id}"{" disabled" if full else ""}>{escape(load.agent.display_name)} '
                f"({state}, {load.open_count} de {limit})</option>"
            )
        if not options:
            return '<span class="empty">Nadie conectado para recibirla.</span>'
        return (
            f'<label for="{field_id}" class="visually-hidden">{escape(label)}</label>'
            f'<select id="{field_id}" name="agent_id" required>{"".join(options)}</select>'
            f'<button type="submit">{escape(label.split()[0])}</button>'
        )

    # --- one conversation -----------------------------------------------------------------------------------

    def conversation(
        self,
        viewer: Viewer,
        handoff: Handoff,
        undelivered: Sequence[OutboxItem],
        loads: Sequence[AgentLoad],
    ) -> str:
        name = self.customer_name(handoff)
        heading = self.live(
            "conversation-head",
            f"<h1>Conversación con {name}</h1><p>{self.status(handoff.status)} {self.priority(handoff.priority)}"
            + (f" · Atiende: {escape(handoff.agent.display_name)}" if handoff.agent else "")
            + "</p>",
            tag="div",
        )
        context = self.live("context", self._context(handoff), tag="aside", attrs=' aria-labelledby="context-title"')
        transcript = self.live(
            "transcript", self._transcript(handoff.messages), tag="ol",
            attrs=' class="transcript" role="log" aria-label="Mensajes"',
        )
        body = (
            f'<div class="conversation">{context}'
            f'<div class="thread">{self.live("deliveries", self._deliveries(viewer, undelivered), tag="div")}'
            f'<section aria-labelledby="transcript-title"><h2 id="transcript-title">Conversación</h2>{transcript}'
            "</section>"
            f'{self.live("compose", self._compose(viewer, handoff), tag="div")}'
            f'<div class="manage">{self.live("routing", self._routing(viewer, handoff, loads), tag="div")}'
            f'{self.live("resolution", self._resolution(viewer, handoff), tag="div")}</div>'
            "</div></div>"
        )
        return self.layout(f"Conversación con {(handoff.customer or {}).get('name') or 'cliente'}",
                           heading + body, viewer)

    def _context(self, handoff: Handoff) -> str:
        customer: Dict[str, Any] = handoff.customer or {}
        verified = (
            '<span class="badge verified">Identidad verificada</span>' if customer.get("verified")
            else '<span class="badge unverified">Identidad no verificada</span>'
        )
        rows = [
            ("Cliente", escape(customer.get("name") or "Sin identificar")),
            ("Identidad", verified),
            ("Documento", escape(customer.get("document") or "—")),
            ("Código de cliente", escape(str(customer.get("customer_id") or "—"))),
            ("Motivo del traspaso", f"<strong>{self.reason(handoff.reason)}</strong>"),
            ("Prioridad", self.priority(handoff.priority)),
            ("Recorrido", self.journey(handoff.journey)),
            ("Canal", self.channel(handoff.channel)),
            ("En espera desde", self.time(handoff.created_at, with_date=True)),
        ]
        if handoff.outcome:
            rows.append(("Resultado", escape(self.policy.outcomes.get(handoff.outcome, handoff.outcome))))
        if handoff.survey_rating:
            rows.append(("Encuesta", f"{handoff.survey_rating} de 5"))
        facts = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
        values, labels = handoff.values or {}, self.policy.captured_values
        captured = (
            "<dl>" + "".join(f"<dt>{escape(labels.get(key, str(key)))}</dt><dd>{escape(_plain(value))}</dd>"
                             for key, value in values.items()) + "</dl>"
            if values else '<p class="empty">Ninguno.</p>'
        )
        offers = (
            "<ul>" + "".join(f"<li>{escape(_plain(offer))}</li>" for offer in handoff.offers) + "</ul>"
            if handoff.offers else '<p class="empty">Ninguna.</p>'
        )
        return (
            '<div class="card"><h2 id="context-title">Contexto</h2>'
            f"<dl>{facts}</dl><h3>Datos capturados por el asistente</h3>{captured}"
            f"<h3>Ofertas mostradas</h3>{offers}</div>"
        )

    def _transcript(self, messages: Iterable[Message]) -> str:
        items = [self._message(message) for message in messages]
        return "".join(items) or '<li class="empty">Aún no hay mensajes.</li>'

    def _message(self, message: Message) -> str:
        author = escape(message.author.display_name) if message.author else ""
        if message.kind == MessageKind.AGENT.value:
            who = f"Agente · {author}" if author else "Agente"
        elif message.kind == MessageKind.NOTE.value:
            who = f"Nota interna · {author} <span class=\"hint\">(el cliente no la ve)</span>"
        elif message.kind == MessageKind.SYSTEM.value:
            who = "Mesa de agentes"
        else:
            who = KIND_LABELS.get(message.kind, escape(message.kind))
        attachments = "".join(self._attachment(item) for item in message.attachments or [])
        delivery = self._delivery(message.delivery) if message.delivery is not None else ""
        return (
            f'<li class="msg msg-{escape(message.kind)}"><p class="meta"><span class="author">{who}</span> '
            f"{self.time(message.at)}{delivery}</p>"
            f'<p class="text">{escape(message.text)}</p>{attachments}</li>'
        )

    @staticmethod
    def _attachment(item: Any) -> str:
        if not isinstance(item, dict):
            return ""
        name = escape(str(item.get("filename") or item.get("kind") or "adjunto"))
        url = str(item.get("media_url") or "")
        if url.startswith(("https://", "http://")):
            return f'<p class="attachment">Adjunto: <a href="{escape(url)}" rel="noopener noreferrer" ' \
                   f'target="_blank">{name}</a></p>'
        return f'<p class="attachment">Adjunto: {name}</p>'

    @staticmethod
    def _delivery(item: OutboxItem) -> str:
        if item.status == DeliveryStatus.DELIVERED.value:
            return ' <span class="delivery delivered">Entregado</span>'
        if item.status == DeliveryStatus.PENDING.value and not item.attempts:
            return ' <span class="delivery pending">Enviando…</span>'
        if item.status == DeliveryStatus.PENDING.value:
            return (
                f' <span class="delivery retrying">No entregado aún: se reintenta automáticamente '
                f"({item.attempts} intentos). {escape(item.last_error or '')}</span>"
            )
        return f' <span class="delivery failed">No entregado: {escape(item.last_error or "")}</span>'

    def _deliveries(self, viewer: Viewer, undelivered: Sequence[OutboxItem]) -> str:
        troubled = [item for item in undelivered if item.attempts or item.status == DeliveryStatus.FAILED.value]
        if not troubled:
            return ""
        rows = []
        for item in troubled:
            retry = ""
            if item.status == DeliveryStatus.FAILED.value:
                retry = self.form(viewer, f"/console/deliveries/{item.id}/retry",
                                  '<button type="submit">Reintentar</button>', cls="inline")
            state = "rechazado" if item.status == DeliveryStatus.FAILED.value else \
                f"pendiente, {item.attempts} intentos"
            rows.append(
                f"<li>{DELIVERY_KINDS.get(item.kind, escape(item.kind))} ({state}): "
                f"{escape(item.last_error or '')} {retry}</li>"
            )
        return (
            '<div class="alert" role="alert"><p><strong>Hay envíos al cliente que aún no llegan.</strong> No se '
            "pierden: se reintentan automáticamente y se entregan en orden.</p>"
            f'<ul>{"".join(rows)}</ul></div>'
        )

    def _compose(self, viewer: Viewer, handoff: Handoff) -> str:
        if handoff.status == HandoffStatus.QUEUED.value:
            return self.form(
                viewer, f"/console/conversations/{handoff.id}/claim",
                '<button type="submit" class="primary">Tomar la conversación</button>', cls="claim",
            )
        if not can_act(viewer, handoff):
            return ""
        customer = (handoff.customer or {}).get("name") or "cliente"
        texts = [
            (item.title, item.text.replace("{agent}", viewer.display_name).replace("{customer}", customer))
            for item in self.policy.canned_responses
        ]
        canned = "".join(f'<option value="{escape(text)}">{escape(title)}</option>' for title, text in texts)
        canned_picker = (
            '<div class="canned"><label for="canned">Respuestas rápidas</label>'
            f'<select id="canned"><option value="">Elija una…</option>{canned}</select>'
            '<button type="button" data-insert-canned>Insertar</button></div>'
            if canned else ""
        )
        reply = self.form(
            viewer, f"/console/conversations/{handoff.id}/reply",
            '<label for="reply-text">Respuesta al cliente</label>'
            f"{canned_picker}"
            '<textarea id="reply-text" name="text" rows="3" maxlength="4000" required></textarea>'
            '<button type="submit" class="primary">Enviar al cliente</button>',
            cls="reply",
        )
        note = self.form(
            viewer, f"/console/conversations/{handoff.id}/notes",
            '<label for="note-text">Nota interna <span class="hint">(solo la ve el equipo)</span></label>'
            '<textarea id="note-text" name="text" rows="2" maxlength="4000" required></textarea>'
            '<button type="submit">Guardar nota</button>',
            cls="note",
        )
        return reply + note

    def _routing(self, viewer: Viewer, handoff: Handoff, loads: Sequence[AgentLoad]) -> str:
        """Assign (a supervisor, while queued) or transfer (while assigned); changes as agents come and go."""
        if handoff.status == HandoffStatus.QUEUED.value and viewer.is_supervisor:
            return self.form(
                viewer, f"/console/conversations/{handoff.id}/assign",
                '<h2>Asignar</h2>' + self._agent_picker("assign-agent", "Asignar a", loads, None, online_only=True),
                label="Asignar la conversación",
            )
        if not can_act(viewer, handoff):
            return ""
        return self.form(
            viewer, f"/console/conversations/{handoff.id}/transfer",
            '<h2>Transferir</h2>'
            + self._agent_picker("transfer-agent", "Transferir a", loads, handoff.agent_id, online_only=True),
            label="Transferir la conversación",
        )

    def _resolution(self, viewer: Viewer, handoff: Handoff) -> str:
        """Kept apart from the routing so an agent's choices here survive a colleague logging in."""
        if not can_act(viewer, handoff):
            return ""
        outcomes = "".join(
            f'<option value="{escape(code)}">{escape(label)}</option>' for code, label in self.policy.outcomes.items()
        )
        checked = " checked" if self.policy.survey_default else ""
        callback = ""
        if CALLBACK_OUTCOME in self.policy.outcomes:
            callback = (
                '<div data-callback-field><label for="callback-at">Fecha y hora de la llamada '
                f'<span class="hint">(solo para «{escape(self.policy.outcomes[CALLBACK_OUTCOME])}»)</span></label>'
                '<input id="callback-at" name="callback_at" type="datetime-local"></div>'
            )
        return self.form(
            viewer, f"/console/conversations/{handoff.id}/resolve",
            '<h2>Resolver</h2><label for="outcome">Resultado</label>'
            f'<select id="outcome" name="outcome" required>{outcomes}</select>{callback}'
            f'<div class="check"><input id="survey" name="survey" type="checkbox" value="1"{checked}>'
            '<label for="survey">Preguntar al cliente por su satisfacción</label></div>'
            '<button type="submit">Resolver y devolver al asistente</button>',
            label="Resolver la conversación",
        )

    # --- tickets and callbacks ------------------------------------------------------------------------------

    def tickets(self, viewer: Viewer, tickets: Sequence[Ticket]) -> str:
        if not tickets:
            table = '<p class="empty">No hay llamadas ni mensajes pendientes.</p>'
        else:
            rows = []
            for ticket in tickets:
                customer = ticket.customer or {}
                who = escape(customer.get("name") or "Sin identificar")
                if customer.get("verified"):
                    who += ' <span class="badge verified">Verificado</span>'
                if ticket.done_at:
                    state = f"Atendido {self.time(ticket.done_at, with_date=True)}" + (
                        f" por {escape(ticket.done_by.display_name)}" if ticket.done_by else ""
                    )
                else:
                    state = self.form(viewer, f"/console/tickets/{ticket.id}/done",
                                      '<button type="submit">Marcar como atendido</button>',
                                      label=f"Marcar {ticket.code} como atendido", cls="inline")
                rows.append(
                    f"<tr><td>{escape(ticket.code)}</td><td>{TICKET_KINDS.get(ticket.kind, escape(ticket.kind))}</td>"
                    f"<td>{who}</td><td>{escape(ticket.conversation_id)}</td>"
                    f"<td>{self.time(ticket.callback_at, with_date=True) or '—'}</td>"
                    f"<td>{escape(ticket.contact or '—')}</td>"
                    f'<td class="summary">{escape(ticket.summary or "—")}</td>'
                    f"<td>{self.time(ticket.created_at, with_date=True)}</td><td>{state}</td></tr>"
                )
            table = (
                '<table><thead><tr><th scope="col">Código</th><th scope="col">Tipo</th><th scope="col">Cliente</th>'
                '<th scope="col">Conversación</th><th scope="col">Llamar el</th><th scope="col">Contacto</th>'
                '<th scope="col">Resumen</th><th scope="col">Creado</th><th scope="col">Estado</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table>'
            )
        main = "<h1>Llamadas y mensajes</h1>" + self.live("tickets", table)
        return self.layout("Llamadas y mensajes", main, viewer, "/console/tickets")


def _plain(value: Any) -> str:
    """A captured value or an offer as one readable line."""
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_plain(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value)
    if isinstance(value, bool):
        return "sí" if value else "no"
    return "—" if value is None else str(value)
