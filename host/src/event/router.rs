//! Fan-out routing: one child event per route, the parent acknowledged once all are handed over.

use std::fmt;
use std::sync::Arc;

use super::{Context, Event, EventError};

/// A destination of routed events (a sender, a pipeline, a queue...).
///
/// A route owns the events it receives: it must acknowledge or fail them eventually; dropping one
/// un-acknowledged fails the tree (see the [event module](super)).
pub trait Route<P, C = Context>: Send + Sync {
    /// Name of the route, passed to the router's context function.
    fn name(&self) -> &str;
    /// Takes ownership of a routed child event.
    fn deliver(&self, event: Event<P, C>);
}

/// A [`Route`] made of a name and a closure.
pub struct FnRoute<F> {
    name: String,
    deliver: F,
}

impl<F> fmt::Debug for FnRoute<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnRoute")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<F> FnRoute<F> {
    /// A route named `name` delivering through `deliver`.
    #[must_use]
    pub fn new(name: impl Into<String>, deliver: F) -> Self {
        Self {
            name: name.into(),
            deliver,
        }
    }
}

impl<P, C, F> Route<P, C> for FnRoute<F>
where
    F: Fn(Event<P, C>) + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&self, event: Event<P, C>) {
        (self.deliver)(event);
    }
}

type ContextFn<C> = Arc<dyn Fn(&C, &str) -> C + Send + Sync>;

/// Fans events out to every route as child events.
///
/// With several routes each child gets a deep copy of the payload ([`Event::clone_child`]) so
/// routes cannot see each other's changes; with a single route the child shares the payload
/// ([`Event::with_context`], copy-on-write), which is cheaper and just as isolated. Each child's
/// context comes from the context function (default: a clone of the parent's context).
pub struct Router<P, C = Context> {
    routes: Vec<Arc<dyn Route<P, C>>>,
    context_for: ContextFn<C>,
}

impl<P, C> Clone for Router<P, C> {
    fn clone(&self) -> Self {
        Self {
            routes: self.routes.clone(),
            context_for: Arc::clone(&self.context_for),
        }
    }
}

impl<P, C> fmt::Debug for Router<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.route_names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<P, C: Clone> Default for Router<P, C> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            context_for: Arc::new(|context: &C, _: &str| context.clone()),
        }
    }
}

impl<P, C: Clone> Router<P, C> {
    /// A router without routes.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl<P, C> Router<P, C> {
    /// Adds a route.
    #[must_use]
    pub fn route(mut self, route: impl Route<P, C> + 'static) -> Self {
        self.routes.push(Arc::new(route));
        self
    }

    /// Adds a route made of a name and a closure.
    #[must_use]
    pub fn route_fn(
        self,
        name: impl Into<String>,
        deliver: impl Fn(Event<P, C>) + Send + Sync + 'static,
    ) -> Self
    where
        P: 'static,
        C: 'static,
    {
        self.route(FnRoute::new(name, deliver))
    }

    /// Sets how a child's context is derived from the parent's context and the route name.
    #[must_use]
    pub fn context_with(
        mut self,
        context_for: impl Fn(&C, &str) -> C + Send + Sync + 'static,
    ) -> Self {
        self.context_for = Arc::new(context_for);
        self
    }

    /// Number of routes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there is no route.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route names, in order.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|route| route.name())
    }
}

impl<P: Clone, C> Router<P, C> {
    /// Delivers one child of `event` to every route, then acknowledges `event`. Returns the number
    /// of children delivered. With no route the event is simply acknowledged (nothing to do).
    ///
    /// # Errors
    ///
    /// [`EventError::Acknowledged`] if `event` had already ended.
    pub fn fan_out(&self, mut event: Event<P, C>) -> Result<usize, EventError> {
        if event.is_acknowledged() {
            return Err(EventError::Acknowledged);
        }
        match self.routes.as_slice() {
            [] => {}
            [route] => {
                let context = (self.context_for)(event.context(), route.name());
                route.deliver(event.with_context(context)?);
            }
            routes => {
                for route in routes {
                    let context = (self.context_for)(event.context(), route.name());
                    route.deliver(event.clone_child(context)?);
                }
            }
        }
        event.ack();
        Ok(self.routes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, mpsc};

    type Shared = Arc<Mutex<Vec<Event<Vec<u8>>>>>;

    fn collecting_router(names: &[&str]) -> (Router<Vec<u8>>, Vec<Shared>) {
        let mut router =
            Router::new().context_with(|c: &Context, route| c.clone().with("route", route));
        let mut sinks = Vec::new();
        for name in names {
            let sink: Shared = Arc::default();
            let s = Arc::clone(&sink);
            router = router.route_fn(*name, move |e| s.lock().expect("lock").push(e));
            sinks.push(sink);
        }
        (router, sinks)
    }

    fn root(handled: &Arc<AtomicUsize>) -> Event<Vec<u8>> {
        let h = Arc::clone(handled);
        Event::with_ack(
            vec![1, 2, 3],
            Context::new().with_trace_id("t"),
            move || {
                h.fetch_add(1, Ordering::SeqCst);
            },
            |_| {},
        )
    }

    #[test]
    fn fan_out_to_many_routes_deep_copies() {
        let handled = Arc::new(AtomicUsize::new(0));
        let (router, sinks) = collecting_router(&["a", "b", "c"]);
        assert_eq!(router.route_names().collect::<Vec<_>>(), ["a", "b", "c"]);
        let root = root(&handled);
        let root_payload = Arc::clone(&root.payload);
        assert_eq!(router.fan_out(root).expect("live"), 3);
        assert_eq!(handled.load(Ordering::SeqCst), 0, "children still live");
        for (sink, name) in sinks.iter().zip(["a", "b", "c"]) {
            let mut events = sink.lock().expect("lock");
            assert_eq!(events.len(), 1);
            let event = &mut events[0];
            assert_eq!(event.context().get("route"), Some(name));
            assert_eq!(event.context().trace_id(), Some("t"));
            assert!(!Arc::ptr_eq(&event.payload, &root_payload), "deep copy");
            event.payload_mut().expect("live").push(9);
        }
        // Cross-talk check: each route changed only its own copy.
        for sink in &sinks {
            assert_eq!(sink.lock().expect("lock")[0].payload(), &vec![1, 2, 3, 9]);
        }
        for sink in &sinks {
            for event in sink.lock().expect("lock").iter_mut() {
                event.ack();
            }
        }
        assert_eq!(handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn single_route_shares_the_payload() {
        let handled = Arc::new(AtomicUsize::new(0));
        let (router, sinks) = collecting_router(&["only"]);
        let root = root(&handled);
        let root_payload = Arc::clone(&root.payload);
        router.fan_out(root).expect("live");
        let mut events = sinks[0].lock().expect("lock");
        assert!(
            Arc::ptr_eq(&events[0].payload, &root_payload),
            "shallow copy"
        );
        assert_eq!(events[0].context().get("route"), Some("only"));
        events[0].ack();
        assert_eq!(handled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_route_acknowledges_and_ended_event_is_refused() {
        let handled = Arc::new(AtomicUsize::new(0));
        let router: Router<Vec<u8>> = Router::new();
        assert!(router.is_empty());
        assert_eq!(router.fan_out(root(&handled)).expect("live"), 0);
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        let mut ended = root(&handled);
        ended.ack();
        assert!(matches!(
            router.fan_out(ended),
            Err(EventError::Acknowledged)
        ));
    }

    #[test]
    fn routes_on_other_threads_complete_the_tree_once() {
        let handled = Arc::new(AtomicUsize::new(0));
        let mut router = Router::new();
        let mut workers = Vec::new();
        for i in 0..4 {
            let (tx, rx) = mpsc::channel::<Event<Vec<u8>>>();
            router = router.route_fn(format!("r{i}"), move |e| tx.send(e).expect("worker alive"));
            workers.push(std::thread::spawn(move || {
                for mut event in rx {
                    event.ack();
                }
            }));
        }
        for _ in 0..100 {
            router.fan_out(root(&handled)).expect("live");
        }
        drop(router);
        for worker in workers {
            worker.join().expect("worker");
        }
        assert_eq!(handled.load(Ordering::SeqCst), 100);
    }
}
