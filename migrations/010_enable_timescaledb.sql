-- 010_enable_timescaledb.sql
-- Enables the TimescaleDB extension in this database. Nothing else: the five
-- time-series tables (metric_hist, oee_calculations, energy_consumption,
-- production_kpis, production_context_history) are converted to hypertables by
-- the migration tool after this file, driven by its plan file.
-- Requires timescaledb in shared_preload_libraries (as in the
-- timescale/timescaledb images).

CREATE EXTENSION IF NOT EXISTS timescaledb;
