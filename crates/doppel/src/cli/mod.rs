mod client;
mod table;
pub mod twin;
mod view;
