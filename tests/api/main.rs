mod crash;
mod health;
mod helpers;
mod lookup;
mod status_callback;
