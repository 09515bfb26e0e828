//! The `Layer` implementation: what happens on each tracing callback.

use std::any::TypeId;

use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
use p2p_otel_context::SpanContextHook;
use tracing::span::{Attributes as SpanAttributes, Id, Record};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::captured::{BusyIdle, CapturedSpan, Extras};
use super::visitor::FieldVisitor;
use super::{lock, SpanCaptureLayer, Spans};
use super::{values, wire};
use crate::model::compact_value::CompactValue;
use crate::model::{Attributes, SpanEvent, SpanId, SpanLink, TraceId, Value};

impl<S> Layer<S> for SpanCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &SpanAttributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        let start = self.shared.clock.now();
        let extras: Option<Box<Extras>> = self.track_busy_idle.then(|| {
            Box::new(Extras {
                busy_idle: Some(BusyIdle::new(start)),
                ..Extras::default()
            })
        });
        record_staged(
            metadata.fields().len(),
            extras,
            |visitor| attrs.record(visitor),
            |slots, extras| {
                let mut guard = lock(&self.shared.spans);
                let Spans {
                    ids, open, values, ..
                } = &mut *guard;
                let values_at = values.push(slots);
                let span_id = ids.span_id();
                // The registry has already resolved explicit parents, contextual parents
                // and explicit roots, the same way: the direct parent is usually captured
                // too.
                let direct_parent = if attrs.is_root() {
                    None
                } else if attrs.is_contextual() {
                    ctx.current_span().id().cloned()
                } else {
                    attrs.parent().cloned()
                };
                let ids_of = |span: &CapturedSpan| (span.trace_id, span.span_id);
                let parent = direct_parent.and_then(|parent| {
                    open.get(&parent).map(ids_of).or_else(|| {
                        // A parent the capture did not see (filtered out of this layer)
                        // is skipped in favour of its nearest captured ancestor.
                        ctx.span(id).and_then(|span| {
                            span.scope()
                                .skip(1)
                                .find_map(|ancestor| open.get(&ancestor.id()).map(ids_of))
                        })
                    })
                });
                let (trace_id, parent) = match parent {
                    Some((trace_id, span_id)) => (trace_id, Some(span_id)),
                    None => (ids.trace_id(), None),
                };
                open.insert(
                    id,
                    CapturedSpan {
                        trace_id,
                        span_id,
                        parent,
                        remote_parent: false,
                        metadata,
                        values_at,
                        start,
                        end: start,
                        extras,
                    },
                );
            },
        );
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(metadata) = ctx.metadata(id) else {
            return;
        };
        record_staged(
            metadata.fields().len(),
            // `otel.*` fields land here, to be merged under the lock.
            None,
            |visitor| values.record(visitor),
            |slots, overrides| {
                let mut guard = lock(&self.shared.spans);
                let Spans {
                    open,
                    values: stored,
                    ..
                } = &mut *guard;
                let captured = open.get_mut(id);
                if let Some(captured) = &captured {
                    let stored = captured.values_mut(stored);
                    for (slot, value) in stored.iter_mut().zip(slots.iter_mut()) {
                        if let Some(value) = value.take() {
                            *slot = Some(value);
                        }
                    }
                }
                // Whatever was not stored (a span the capture does not see) is dropped.
                slots.iter_mut().for_each(|slot| drop(slot.take()));
                if let (Some(captured), Some(recorded)) = (captured, overrides) {
                    captured.extras_mut().overrides.update(recorded.overrides);
                }
            },
        );
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _ctx: Context<'_, S>) {
        let mut spans = lock(&self.shared.spans);
        let open = &mut spans.open;
        let Some((trace_id, span_id)) = open.get(follows).map(|span| (span.trace_id, span.span_id))
        else {
            return;
        };
        if let Some(captured) = open.get_mut(id) {
            captured.extras_mut().links.push(SpanLink {
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
            time_unix_nanos: self.shared.clock.unix_nanos(self.shared.clock.now()),
            attributes,
        };
        match ctx.event_span(event) {
            Some(span) => {
                let mut spans = lock(&self.shared.spans);
                if let Some(captured) = spans.open.get_mut(&span.id()) {
                    if *metadata.level() == Level::ERROR {
                        captured.error_event();
                    }
                    captured.extras_mut().events.push(span_event);
                }
            }
            None => lock(&self.shared.events_outside_spans).push(span_event),
        }
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.track_busy_idle {
            self.transition(id, false);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.track_busy_idle {
            self.transition(id, true);
        }
    }

    // SAFETY: each pointer returned points at a value of the type asked for: the layer
    // itself, or the `'static` hook.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<SpanContextHook>() {
            Some(&CONTEXT_HOOK as *const SpanContextHook as *const ())
        } else {
            None
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let end = self.shared.clock.now();
        let mut spans = lock(&self.shared.spans);
        let Some(mut captured) = spans.open.remove(&id) else {
            return;
        };
        if let Some(busy_idle) = captured
            .extras
            .as_deref_mut()
            .and_then(|extras| extras.busy_idle.as_mut())
        {
            busy_idle.transition(&self.shared.clock, end, false);
        }
        captured.end = end;
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

/// Records a span's fields with `record` into staged slots (see [`values::stage`]) and its
/// `otel.*` fields into `extras` (created on the first), then hands both to `store`.
fn record_staged<R>(
    len: usize,
    extras: Option<Box<Extras>>,
    record: impl FnOnce(&mut FieldVisitor<'_, [Option<CompactValue>]>),
    store: impl FnOnce(&mut [Option<CompactValue>], Option<Box<Extras>>) -> R,
) -> R {
    values::stage(
        len,
        |slots| {
            let mut extras = extras;
            let mut visitor = FieldVisitor::new(slots);
            visitor.overrides = Some(&mut extras);
            record(&mut visitor);
            extras
        },
        store,
    )
}

impl SpanCaptureLayer {
    /// Accounts an enter (`was_busy` false: the span was idle until now) or an exit.
    fn transition(&self, id: &Id, was_busy: bool) {
        let now = self.shared.clock.now();
        let mut spans = lock(&self.shared.spans);
        if let Some(busy_idle) = spans
            .open
            .get_mut(id)
            .and_then(|captured| captured.extras.as_deref_mut())
            .and_then(|extras| extras.busy_idle.as_mut())
        {
            busy_idle.transition(&self.shared.clock, now, was_busy);
        }
    }
}

/// How the capture answers `p2p-otel-context`'s `TraceContext::of` and `set_parent` when
/// no OpenTelemetry layer sees a span: with the ids it keeps itself. Handed out by
/// [`Layer::downcast_raw`].
static CONTEXT_HOOK: SpanContextHook = SpanContextHook {
    span_context: captured_context,
    set_remote_parent: captured_remote_parent,
};

/// Runs `f` on the capture state of span `id` while it is open, when a capture layer of
/// the kit is part of `dispatch`.
fn with_open<R>(dispatch: &Dispatch, id: &Id, f: impl FnOnce(&mut CapturedSpan) -> R) -> Option<R> {
    let layer = dispatch.downcast_ref::<SpanCaptureLayer>()?;
    let mut spans = lock(&layer.shared.spans);
    spans.open.get_mut(id).map(f)
}

/// The captured ids of span `id` while it is open.
fn captured_context(dispatch: &Dispatch, id: &Id) -> Option<SpanContext> {
    with_open(dispatch, id, |captured| {
        SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(captured.trace_id.to_bytes()),
            opentelemetry::trace::SpanId::from_bytes(captured.span_id.to_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    })
}

/// Makes a remote span the captured parent of span `id`, which joins its trace. Returns
/// whether a capture layer of the kit saw the span.
fn captured_remote_parent(dispatch: &Dispatch, id: &Id, parent: &SpanContext) -> bool {
    with_open(dispatch, id, |captured| {
        captured.trace_id = TraceId::from_bytes(parent.trace_id().to_bytes());
        captured.parent = Some(SpanId::from_bytes(parent.span_id().to_bytes()));
        captured.remote_parent = true;
    })
    .is_some()
}
