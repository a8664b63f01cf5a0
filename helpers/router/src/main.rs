//! `docker-credential-regkit`: one helper for every registry, and a kubelet credential provider with
//! `kubelet` as its argument. See `regkit::router`.

fn main() -> std::process::ExitCode {
    regkit::kubelet::dispatch(
        regkit::router::BINARY,
        &regkit::router::Router::from_process(),
    )
}
