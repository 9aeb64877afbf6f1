-- 001_telemetry.sql
-- MS5.0 telemetry core: schema factory_telemetry, metric definitions and PLC
-- bindings, latest and historical metric values, fault catalog / active faults /
-- fault events, equipment context (operator, shift, planned stop), and the
-- views public.v_equipment_latest and public.v_faults_active.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed). metric_hist keeps its legacy shape (id bigserial
-- primary key); the TimescaleDB conversion is done by the migration tool.
-- The production columns of context are added in 007 (they reference tables
-- created in 003 and 004).

CREATE SCHEMA IF NOT EXISTS factory_telemetry;

CREATE TABLE IF NOT EXISTS factory_telemetry.metric_def (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    metric_key text NOT NULL,
    value_type text NOT NULL,
    unit text,
    description text NOT NULL
);

CREATE TABLE IF NOT EXISTS factory_telemetry.metric_binding (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    metric_def_id uuid NOT NULL,
    plc_kind text NOT NULL,
    address text NOT NULL,
    bit_index integer,
    parse_hint text,
    transform_sql text
);

CREATE TABLE IF NOT EXISTS factory_telemetry.metric_latest (
    metric_def_id uuid NOT NULL,
    ts timestamp with time zone NOT NULL,
    value_bool boolean,
    value_int bigint,
    value_real double precision,
    value_text text,
    value_json jsonb
);

CREATE TABLE IF NOT EXISTS factory_telemetry.metric_hist (
    id bigserial NOT NULL,
    metric_def_id uuid NOT NULL,
    ts timestamp with time zone NOT NULL,
    value_bool boolean,
    value_int bigint,
    value_real double precision,
    value_text text,
    value_json jsonb
);

CREATE TABLE IF NOT EXISTS factory_telemetry.fault_catalog (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    bit_index integer NOT NULL,
    name text NOT NULL,
    description text,
    marker text NOT NULL
);

CREATE TABLE IF NOT EXISTS factory_telemetry.fault_active (
    equipment_code text NOT NULL,
    bit_index integer NOT NULL,
    ts timestamp with time zone NOT NULL,
    is_active boolean NOT NULL
);

CREATE TABLE IF NOT EXISTS factory_telemetry.fault_event (
    id bigserial NOT NULL,
    equipment_code text NOT NULL,
    bit_index integer NOT NULL,
    ts_on timestamp with time zone NOT NULL,
    ts_off timestamp with time zone,
    duration_s double precision
);

CREATE TABLE IF NOT EXISTS factory_telemetry.context (
    equipment_code text NOT NULL,
    current_operator text,
    current_shift text,
    planned_stop boolean NOT NULL DEFAULT false,
    planned_stop_reason text,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);

-- Keys and foreign keys, added only when missing. A constraint counts as present
-- when one with the same name (PostgreSQL's default name) or the same definition
-- is already on the table, or, for a primary key, when the table has any primary key.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('factory_telemetry.metric_def',     'metric_def_pkey',                            'PRIMARY KEY (id)'),
            ('factory_telemetry.metric_def',     'metric_def_equipment_code_metric_key_key',   'UNIQUE (equipment_code, metric_key)'),
            ('factory_telemetry.metric_binding', 'metric_binding_pkey',                        'PRIMARY KEY (id)'),
            ('factory_telemetry.metric_latest',  'metric_latest_pkey',                         'PRIMARY KEY (metric_def_id)'),
            ('factory_telemetry.metric_hist',    'metric_hist_pkey',                           'PRIMARY KEY (id)'),
            ('factory_telemetry.fault_catalog',  'fault_catalog_pkey',                         'PRIMARY KEY (id)'),
            ('factory_telemetry.fault_catalog',  'fault_catalog_equipment_code_bit_index_key', 'UNIQUE (equipment_code, bit_index)'),
            ('factory_telemetry.fault_active',   'fault_active_pkey',                          'PRIMARY KEY (equipment_code, bit_index)'),
            ('factory_telemetry.fault_event',    'fault_event_pkey',                           'PRIMARY KEY (id)'),
            ('factory_telemetry.context',        'context_pkey',                               'PRIMARY KEY (equipment_code)'),
            ('factory_telemetry.metric_binding', 'metric_binding_metric_def_id_fkey',          'FOREIGN KEY (metric_def_id) REFERENCES factory_telemetry.metric_def(id) ON DELETE CASCADE'),
            ('factory_telemetry.metric_latest',  'metric_latest_metric_def_id_fkey',           'FOREIGN KEY (metric_def_id) REFERENCES factory_telemetry.metric_def(id) ON DELETE CASCADE'),
            ('factory_telemetry.metric_hist',    'metric_hist_metric_def_id_fkey',             'FOREIGN KEY (metric_def_id) REFERENCES factory_telemetry.metric_def(id) ON DELETE CASCADE')
        ) AS v(tbl, conname, condef)
    LOOP
        IF NOT EXISTS (
            SELECT 1
            FROM pg_constraint pc
            WHERE pc.conrelid = c.tbl::regclass
              AND (pc.conname = c.conname
                   OR pg_get_constraintdef(pc.oid) = c.condef
                   OR (pc.contype = 'p' AND starts_with(c.condef, 'PRIMARY KEY')))
        ) THEN
            EXECUTE 'ALTER TABLE ' || c.tbl || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || c.condef;
            RAISE NOTICE 'added constraint % on %', c.conname, c.tbl;
        END IF;
    END LOOP;
END
$$;

-- Indexes
CREATE INDEX IF NOT EXISTS ix_metric_hist_def_ts
    ON factory_telemetry.metric_hist (metric_def_id, ts DESC);
CREATE INDEX IF NOT EXISTS idx_metric_binding_metric_def_id
    ON factory_telemetry.metric_binding (metric_def_id);
CREATE INDEX IF NOT EXISTS idx_fault_event_equipment_ts_on
    ON factory_telemetry.fault_event (equipment_code, ts_on);

-- Views
CREATE OR REPLACE VIEW public.v_equipment_latest AS
SELECT md.equipment_code,
       md.metric_key,
       ml.ts,
       COALESCE(ml.value_text,
                to_jsonb(COALESCE(ml.value_bool::text, ml.value_int::text, ml.value_real::text))::text) AS value,
       ml.value_bool,
       ml.value_int,
       ml.value_real,
       ml.value_json
FROM factory_telemetry.metric_def md
JOIN factory_telemetry.metric_latest ml ON ml.metric_def_id = md.id;

CREATE OR REPLACE VIEW public.v_faults_active AS
SELECT f.equipment_code,
       f.bit_index,
       f.ts,
       f.is_active,
       c.name,
       c.description,
       c.marker
FROM factory_telemetry.fault_active f
LEFT JOIN factory_telemetry.fault_catalog c
       ON c.equipment_code = f.equipment_code
      AND c.bit_index = f.bit_index
WHERE f.is_active = true;
