//! The API's own async runtime: every operation runs here, never on its caller's runtime
//! (which may be a `#[tokio::test]`'s single thread) and never by nesting one in another.

use crate::Error;
use std::future::Future;
use std::sync::OnceLock;

/// Two worker threads, made on first use and kept for the life of the process.
fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("lab-api")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Io("starting the lab API's runtime".into(), std::io::Error::other(e.clone())))
}

/// Runs `f` on the API's runtime; awaitable from any executor (or none: see [`block_on`]).
pub(super) async fn run<T: Send + 'static>(
    f: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let task = runtime()?.spawn(f);
    task.await.map_err(|e| Error::Io("a task of the lab API".into(), std::io::Error::other(e.to_string())))?
}

/// Runs the future `make` returns on one of the API's runtime's blocking threads, driven by
/// the runtime's handle: for the runtime's futures, which the compiler cannot always show to
/// be `Send` (they need not be, this way).
pub(super) async fn drive<T, F, Fut>(make: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>>,
{
    let handle = runtime()?.handle().clone();
    blocking(move || handle.block_on(make())).await
}

/// Runs blocking `f` (state files, /proc) on the API's runtime's blocking threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let task = runtime()?.spawn_blocking(f);
    task.await.map_err(|e| Error::Io("a task of the lab API".into(), std::io::Error::other(e.to_string())))?
}

/// Runs `f` on the calling thread to completion, whatever runtime (if any) the thread is
/// part of: the sync API. Its work runs on the API's runtime, so this only waits.
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}
