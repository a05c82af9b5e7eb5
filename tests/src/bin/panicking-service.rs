//! `panicking-service`: loopd with one more service kind, `boom`, whose code panics where its
//! entry says (`panic_in = "factory"`, `"start"`, or `"nowhere"`). Run by
//! `tests/tests/custom_service.rs` to check that a panicking service is a one-line error at
//! startup and keeps the running config on SIGHUP.

use std::sync::Arc;

use loopd::service::{only_keys, string_option, Service, ServiceContext, ServiceError};

struct Boom {
    panic_in_start: bool,
}

impl Service for Boom {
    fn needs_listener(&self) -> bool {
        false
    }

    fn start(&self, _ctx: ServiceContext<'_>) -> Result<(), ServiceError> {
        if self.panic_in_start {
            panic!("boom in start");
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    loopd::Daemon::builder()
        .service("boom", |options| {
            only_keys(options, &["panic_in"])?;
            let at = string_option(options, "panic_in")?.unwrap_or("nowhere");
            if at == "factory" {
                panic!("boom in the factory");
            }
            Ok(Arc::new(Boom {
                panic_in_start: at == "start",
            }) as Arc<dyn Service>)
        })
        .main()
}
