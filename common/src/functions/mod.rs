//! SQL functions that leader and compute nodes must both know, because a plan fragment that
//! uses them may run on either side (datafusion-proto ships functions by name, and each side
//! looks the name up in its own registry). One module per family, as Redshift's reference
//! groups them; each registers under Redshift's name, replacing DataFusion's function of that
//! name where there is one. Functions that need session state (the current user, settings)
//! are the leader's (`pg_catalog`), not here.

mod datetime;
mod string;
mod system;

use datafusion::prelude::SessionContext;

pub use system::{MORE_THAN_ONE_ROW, version_string};

/// Registers Blueshift's functions, replacing DataFusion's of the same name.
pub fn register_functions(ctx: &SessionContext) {
    for udf in [
        system::version(),
        system::more_than_one_row(),
        datetime::getdate(),
        string::regexp_substr(),
    ] {
        ctx.register_udf(udf);
    }
}
