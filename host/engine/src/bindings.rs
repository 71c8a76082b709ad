//! Host bindings generated from `wit/` for the contract in `wit/`.
//!
//! Both plugin worlds share their imports: the inspector world's bindings
//! define every imported interface, and the action world reuses them. The
//! rest of the engine converts these generated types into `bucketscan-core`
//! types at the edges (see `convert.rs`).

pub(crate) mod inspector {
    wasmtime::component::bindgen!({
        world: "inspector-plugin",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "bucketscan:plugin/object.object": crate::sandbox::ScanObject,
        },
    });
}

pub(crate) mod action {
    wasmtime::component::bindgen!({
        world: "action-plugin",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "bucketscan:plugin/types": crate::bindings::inspector::bucketscan::plugin::types,
            "bucketscan:plugin/object": crate::bindings::inspector::bucketscan::plugin::object,
            "bucketscan:plugin/log": crate::bindings::inspector::bucketscan::plugin::log,
            "bucketscan:plugin/clamav": crate::bindings::inspector::bucketscan::plugin::clamav,
            "bucketscan:plugin/storage": crate::bindings::inspector::bucketscan::plugin::storage,
            "bucketscan:plugin/http": crate::bindings::inspector::bucketscan::plugin::http,
            "bucketscan:plugin/context": crate::bindings::inspector::bucketscan::plugin::context,
        },
    });
}

pub(crate) use inspector::bucketscan::plugin::{clamav, context, http, log, object, storage, types};
