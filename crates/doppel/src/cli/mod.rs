pub mod twin;
