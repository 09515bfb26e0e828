//! The `Layer` implementation: what happens on each tracing callback.

use std::time::{Duration, Instant};

use tracing::span::{Attributes as SpanAttributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::captured::{CapturedSpan, Extras};
use super::open::Pending;
use super::visitor::FieldVisitor;
use super::wire;
use super::{lock, SpanCaptureLayer};
use crate::model::{Attributes, SpanEvent, SpanId, SpanLink, TraceId, Value};

impl<S> Layer<S> for SpanCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &SpanAttributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        let mut fields = Vec::with_capacity(metadata.fields().len());
        let mut extras: Option<Box<Extras>> = self.track_busy_idle.then(|| {
            Box::new(Extras {
                busy_idle: Some((Duration::ZERO, Duration::ZERO)),
                ..Extras::default()
            })
        });
        let mut visitor = FieldVisitor::new(&mut fields);
        visitor.overrides = Some(&mut extras);
        visitor.first_record = true;
        attrs.record(&mut visitor);
        let recorded = visitor.visited;
        let span_id = self.ids.span_id();
        let now = Instant::now();
        let mut spans = lock(&self.shared.spans);
        let open = &mut spans.open;
        // The registry has already resolved explicit parents, contextual parents and
        // explicit roots. A parent the capture did not see (filtered out of this layer)
        // is skipped in favour of its nearest captured ancestor.
        let parent = if attrs.is_root() {
            None
        } else {
            ctx.span(id).and_then(|span| {
                span.scope().skip(1).find_map(|ancestor| {
                    open.get(&ancestor.id())
                        .map(|p| (p.span.trace_id, p.span.span_id))
                })
            })
        };
        let (trace_id, parent) = match parent {
            Some((trace_id, span_id)) => (trace_id, Some(span_id)),
            None => (self.ids.trace_id(), None),
        };
        open.insert(
            id,
            Pending {
                span: CapturedSpan {
                    trace_id,
                    span_id,
                    parent,
                    remote_parent: false,
                    metadata,
                    fields,
                    recorded,
                    start: now,
                    end: None,
                    extras,
                },
                last_transition: now,
            },
        );
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = lock(&self.shared.spans);
        let Some(pending) = spans.open.get_mut(id) else {
            return;
        };
        let captured = &mut pending.span;
        let mut visitor = FieldVisitor::new(&mut captured.fields);
        visitor.overrides = Some(&mut captured.extras);
        values.record(&mut visitor);
        captured.recorded |= visitor.visited;
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _ctx: Context<'_, S>) {
        let mut spans = lock(&self.shared.spans);
        let open = &mut spans.open;
        let Some((trace_id, span_id)) =
            open.get(follows).map(|p| (p.span.trace_id, p.span.span_id))
        else {
            return;
        };
        if let Some(pending) = open.get_mut(id) {
            pending.span.extras_mut().links.push(SpanLink {
                trace_id,
                span_id,
                attributes: Attributes::new(),
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut attributes = Attributes::new();
        let mut message = None;
        let mut visitor = FieldVisitor::new(&mut attributes);
        visitor.message = Some(&mut message);
        event.record(&mut visitor);
        let metadata = event.metadata();
        attributes.insert("level".into(), Value::Str(metadata.level().as_str().into()));
        attributes.insert("target".into(), Value::Str(metadata.target().into()));
        let span_event = SpanEvent {
            name: message.unwrap_or_else(|| metadata.name().to_owned()),
            time_unix_nanos: self.shared.clock.unix_nanos(Instant::now()),
            attributes,
        };
        match ctx.event_span(event) {
            Some(span) => {
                let mut spans = lock(&self.shared.spans);
                if let Some(pending) = spans.open.get_mut(&span.id()) {
                    if *metadata.level() == Level::ERROR {
                        pending.span.error_event();
                    }
                    pending.span.extras_mut().events.push(span_event);
                }
            }
            None => lock(&self.shared.events_outside_spans).push(span_event),
        }
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.track_busy_idle {
            self.account(id, |(_, idle)| idle);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.track_busy_idle {
            self.account(id, |(busy, _)| busy);
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let now = Instant::now();
        let mut spans = lock(&self.shared.spans);
        let Some(Pending {
            span: mut captured,
            last_transition,
        }) = spans.open.remove(&id)
        else {
            return;
        };
        if let Some((_, idle)) = captured
            .extras
            .as_deref_mut()
            .and_then(|extras| extras.busy_idle.as_mut())
        {
            *idle += now.saturating_duration_since(last_transition);
        }
        captured.end = Some(now);
        if let Some(token) = self.wire_token {
            if let Some(exported) = wire::take(token) {
                exported.apply_to(&mut captured);
            }
        }
        spans.closed.push(captured);
        drop(spans);
        self.shared.changed.notify();
    }
}

impl SpanCaptureLayer {
    /// Adds the time since the span's last enter or exit to the bucket `pick` chooses:
    /// idle time on enter, busy time on exit.
    fn account(&self, id: &Id, pick: fn(&mut (Duration, Duration)) -> &mut Duration) {
        let mut spans = lock(&self.shared.spans);
        if let Some(pending) = spans.open.get_mut(id) {
            let now = Instant::now();
            if let Some(buckets) = pending
                .span
                .extras
                .as_deref_mut()
                .and_then(|extras| extras.busy_idle.as_mut())
            {
                *pick(buckets) += now.saturating_duration_since(pending.last_transition);
            }
            pending.last_transition = now;
        }
    }
}

/// Runs `f` on the capture state of `span` while it is open, when a capture layer of the
/// kit sees it.
fn with_pending<R>(span: &tracing::Span, f: impl FnOnce(&mut Pending) -> R) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<SpanCaptureLayer>()?;
        let mut spans = lock(&layer.shared.spans);
        spans.open.get_mut(id).map(f)
    })
    .flatten()
}

/// The captured ids of `span` while it is open, when a capture layer of the kit sees it.
pub(crate) fn ids_of(span: &tracing::Span) -> Option<(TraceId, SpanId)> {
    with_pending(span, |pending| {
        (pending.span.trace_id, pending.span.span_id)
    })
}

/// Makes a remote span the captured parent of `span`, which joins its trace. Returns
/// whether a capture layer of the kit saw the span.
pub(crate) fn set_remote_parent(span: &tracing::Span, trace_id: TraceId, parent: SpanId) -> bool {
    with_pending(span, |pending| {
        pending.span.trace_id = trace_id;
        pending.span.parent = Some(parent);
        pending.span.remote_parent = true;
    })
    .is_some()
}
