-- 007_plc_integration.sql
-- MS5.0 PLC integration: the production-line columns of equipment_config, the
-- production columns of context, the equipment-to-line mapping, the production
-- context history, the functions update_equipment_production_context(...17 args)
-- and get_equipment_production_context(text), and the views
-- public.v_equipment_production_status and public.v_production_line_equipment.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed; a function is only dropped and recreated when an older
-- version has different parameter names or defaults, which CREATE OR REPLACE
-- cannot change). production_context_history keeps its legacy shape (id
-- bigserial primary key); the TimescaleDB conversion is done by the migration tool.

-- context and equipment_config: production management columns
ALTER TABLE factory_telemetry.context
    ADD COLUMN IF NOT EXISTS current_job_id uuid,
    ADD COLUMN IF NOT EXISTS production_schedule_id uuid,
    ADD COLUMN IF NOT EXISTS target_speed real,
    ADD COLUMN IF NOT EXISTS current_product_type_id uuid,
    ADD COLUMN IF NOT EXISTS production_line_id uuid,
    ADD COLUMN IF NOT EXISTS shift_id uuid,
    ADD COLUMN IF NOT EXISTS target_quantity integer DEFAULT 0,
    ADD COLUMN IF NOT EXISTS actual_quantity integer DEFAULT 0,
    ADD COLUMN IF NOT EXISTS production_efficiency real DEFAULT 0.0,
    ADD COLUMN IF NOT EXISTS quality_rate real DEFAULT 0.0,
    ADD COLUMN IF NOT EXISTS changeover_status text DEFAULT 'none'::text,
    ADD COLUMN IF NOT EXISTS changeover_start_time timestamp with time zone,
    ADD COLUMN IF NOT EXISTS changeover_end_time timestamp with time zone,
    ADD COLUMN IF NOT EXISTS last_production_update timestamp with time zone DEFAULT now();

ALTER TABLE factory_telemetry.equipment_config
    ADD COLUMN IF NOT EXISTS production_line_id uuid,
    ADD COLUMN IF NOT EXISTS equipment_type text DEFAULT 'production'::text,
    ADD COLUMN IF NOT EXISTS criticality_level integer DEFAULT 3,
    ADD COLUMN IF NOT EXISTS target_speed real,
    ADD COLUMN IF NOT EXISTS oee_targets jsonb DEFAULT '{"oee": 0.73, "quality": 0.95, "performance": 0.85, "availability": 0.90}'::jsonb,
    ADD COLUMN IF NOT EXISTS fault_thresholds jsonb DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS andon_settings jsonb DEFAULT '{"auto_generate_events": true, "escalation_timeout_minutes": 15}'::jsonb,
    ADD COLUMN IF NOT EXISTS location text,
    ADD COLUMN IF NOT EXISTS department text,
    ADD COLUMN IF NOT EXISTS maintenance_interval_hours integer DEFAULT 168,
    ADD COLUMN IF NOT EXISTS last_maintenance_date timestamp with time zone,
    ADD COLUMN IF NOT EXISTS next_maintenance_date timestamp with time zone;

CREATE TABLE IF NOT EXISTS factory_telemetry.equipment_line_mapping (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    equipment_code text NOT NULL,
    production_line_id uuid NOT NULL,
    position_in_line integer,
    is_primary boolean DEFAULT false,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.production_context_history (
    id bigserial NOT NULL,
    equipment_code text NOT NULL,
    context_data jsonb NOT NULL,
    change_reason text,
    changed_by uuid,
    changed_at timestamp with time zone DEFAULT now()
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
            ('factory_telemetry.equipment_line_mapping',     'equipment_line_mapping_pkey',                                  'PRIMARY KEY (id)'),
            ('factory_telemetry.equipment_line_mapping',     'equipment_line_mapping_equipment_code_production_line_id_key', 'UNIQUE (equipment_code, production_line_id)'),
            ('factory_telemetry.production_context_history', 'production_context_history_pkey',                              'PRIMARY KEY (id)'),
            ('factory_telemetry.context',                    'context_current_job_id_fkey',                                  'FOREIGN KEY (current_job_id) REFERENCES factory_telemetry.job_assignments(id)'),
            ('factory_telemetry.context',                    'context_current_product_type_id_fkey',                         'FOREIGN KEY (current_product_type_id) REFERENCES factory_telemetry.product_types(id)'),
            ('factory_telemetry.context',                    'context_production_line_id_fkey',                              'FOREIGN KEY (production_line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.context',                    'context_production_schedule_id_fkey',                          'FOREIGN KEY (production_schedule_id) REFERENCES factory_telemetry.production_schedules(id)'),
            ('factory_telemetry.context',                    'context_shift_id_fkey',                                        'FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id)'),
            ('factory_telemetry.equipment_config',           'equipment_config_production_line_id_fkey',                     'FOREIGN KEY (production_line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.equipment_line_mapping',     'equipment_line_mapping_equipment_code_fkey',                   'FOREIGN KEY (equipment_code) REFERENCES factory_telemetry.equipment_config(equipment_code)'),
            ('factory_telemetry.equipment_line_mapping',     'equipment_line_mapping_production_line_id_fkey',               'FOREIGN KEY (production_line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.production_context_history', 'production_context_history_changed_by_fkey',                   'FOREIGN KEY (changed_by) REFERENCES factory_telemetry.users(id)')
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
CREATE INDEX IF NOT EXISTS idx_equipment_config_production_line ON factory_telemetry.equipment_config (production_line_id);
CREATE INDEX IF NOT EXISTS idx_equipment_config_equipment_type ON factory_telemetry.equipment_config (equipment_type);
CREATE INDEX IF NOT EXISTS idx_equipment_config_criticality ON factory_telemetry.equipment_config (criticality_level);
CREATE INDEX IF NOT EXISTS idx_context_production_line ON factory_telemetry.context (production_line_id);
CREATE INDEX IF NOT EXISTS idx_context_current_job ON factory_telemetry.context (current_job_id);
CREATE INDEX IF NOT EXISTS idx_context_production_schedule ON factory_telemetry.context (production_schedule_id);
CREATE INDEX IF NOT EXISTS idx_context_shift ON factory_telemetry.context (shift_id);
CREATE INDEX IF NOT EXISTS idx_equipment_line_mapping_equipment ON factory_telemetry.equipment_line_mapping (equipment_code);
CREATE INDEX IF NOT EXISTS idx_equipment_line_mapping_line ON factory_telemetry.equipment_line_mapping (production_line_id);
CREATE INDEX IF NOT EXISTS idx_production_context_history_equipment ON factory_telemetry.production_context_history (equipment_code);
CREATE INDEX IF NOT EXISTS idx_production_context_history_changed_at ON factory_telemetry.production_context_history (changed_at);

-- Views
CREATE OR REPLACE VIEW public.v_equipment_production_status AS
SELECT ec.id,
       ec.equipment_code,
       ec.name AS equipment_name,
       ec.equipment_type,
       ec.criticality_level,
       ec.target_speed,
       ec.enabled AS equipment_enabled,
       pl.id AS production_line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed AS line_target_speed,
       c.current_operator,
       c.current_shift,
       c.current_job_id,
       c.production_schedule_id,
       c.target_quantity,
       c.actual_quantity,
       c.production_efficiency,
       c.quality_rate,
       c.changeover_status,
       c.planned_stop,
       c.planned_stop_reason,
       c.last_production_update,
       pt.product_code,
       pt.name AS product_name,
       ps.scheduled_start,
       ps.scheduled_end,
       ps.status AS schedule_status,
       ja.status AS job_status,
       u.username AS assigned_operator
FROM factory_telemetry.equipment_config ec
LEFT JOIN factory_telemetry.production_lines pl ON pl.id = ec.production_line_id
LEFT JOIN factory_telemetry.context c ON c.equipment_code = ec.equipment_code
LEFT JOIN factory_telemetry.product_types pt ON pt.id = c.current_product_type_id
LEFT JOIN factory_telemetry.production_schedules ps ON ps.id = c.production_schedule_id
LEFT JOIN factory_telemetry.job_assignments ja ON ja.id = c.current_job_id
LEFT JOIN factory_telemetry.users u ON u.id = ja.user_id
WHERE ec.enabled = true
ORDER BY pl.line_code, ec.equipment_code;

CREATE OR REPLACE VIEW public.v_production_line_equipment AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed AS line_target_speed,
       count(ec.id) AS total_equipment,
       count(ec.id) FILTER (WHERE ec.enabled = true) AS active_equipment,
       count(ec.id) FILTER (WHERE ec.equipment_type = 'production') AS production_equipment,
       count(ec.id) FILTER (WHERE ec.criticality_level >= 4) AS critical_equipment,
       avg(ec.target_speed) AS avg_equipment_speed,
       string_agg(ec.equipment_code, ', ' ORDER BY elm.position_in_line) AS equipment_codes
FROM factory_telemetry.production_lines pl
LEFT JOIN factory_telemetry.equipment_config ec ON ec.production_line_id = pl.id
LEFT JOIN factory_telemetry.equipment_line_mapping elm
       ON elm.equipment_code = ec.equipment_code
      AND elm.production_line_id = pl.id
GROUP BY pl.id, pl.line_code, pl.name, pl.target_speed
ORDER BY pl.line_code;

-- Functions
-- CREATE OR REPLACE FUNCTION cannot rename parameters, remove defaults or
-- change the result type. If an existing function with one of these signatures
-- differs in those respects, it is dropped here and recreated below.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT * FROM (VALUES
            ('factory_telemetry.update_equipment_production_context(text,uuid,uuid,uuid,real,uuid,uuid,integer,integer,real,real,text,text,text,boolean,text,text)',
             'p_equipment_code text, p_production_line_id uuid DEFAULT NULL::uuid, p_current_job_id uuid DEFAULT NULL::uuid, p_production_schedule_id uuid DEFAULT NULL::uuid, p_target_speed real DEFAULT NULL::real, p_current_product_type_id uuid DEFAULT NULL::uuid, p_shift_id uuid DEFAULT NULL::uuid, p_target_quantity integer DEFAULT NULL::integer, p_actual_quantity integer DEFAULT NULL::integer, p_production_efficiency real DEFAULT NULL::real, p_quality_rate real DEFAULT NULL::real, p_changeover_status text DEFAULT NULL::text, p_current_operator text DEFAULT NULL::text, p_current_shift text DEFAULT NULL::text, p_planned_stop boolean DEFAULT NULL::boolean, p_planned_stop_reason text DEFAULT NULL::text, p_change_reason text DEFAULT ''system_update''::text',
             'void'),
            ('factory_telemetry.get_equipment_production_context(text)',
             'p_equipment_code text',
             'TABLE(equipment_code text, production_line_id uuid, line_code text, line_name text, current_job_id uuid, production_schedule_id uuid, target_speed real, current_product_type_id uuid, product_code text, product_name text, shift_id uuid, shift_name text, target_quantity integer, actual_quantity integer, production_efficiency real, quality_rate real, changeover_status text, current_operator text, current_shift text, planned_stop boolean, planned_stop_reason text, last_production_update timestamp with time zone)')
        ) AS v(sig, args, result)
    LOOP
        IF to_regprocedure(f.sig) IS NOT NULL
           AND (pg_get_function_arguments(to_regprocedure(f.sig)) <> f.args
                OR pg_get_function_result(to_regprocedure(f.sig)) <> f.result) THEN
            EXECUTE 'DROP FUNCTION ' || f.sig;
            RAISE NOTICE 'dropped % (different parameters or result), recreating it', f.sig;
        END IF;
    END LOOP;
END
$$;

-- Sets the production context of one piece of equipment (creating its context
-- row if missing) and records the new context in production_context_history.
-- Arguments left NULL keep the current value (or the column default for a new row).
CREATE OR REPLACE FUNCTION factory_telemetry.update_equipment_production_context(
    p_equipment_code text,
    p_production_line_id uuid DEFAULT NULL,
    p_current_job_id uuid DEFAULT NULL,
    p_production_schedule_id uuid DEFAULT NULL,
    p_target_speed real DEFAULT NULL,
    p_current_product_type_id uuid DEFAULT NULL,
    p_shift_id uuid DEFAULT NULL,
    p_target_quantity integer DEFAULT NULL,
    p_actual_quantity integer DEFAULT NULL,
    p_production_efficiency real DEFAULT NULL,
    p_quality_rate real DEFAULT NULL,
    p_changeover_status text DEFAULT NULL,
    p_current_operator text DEFAULT NULL,
    p_current_shift text DEFAULT NULL,
    p_planned_stop boolean DEFAULT NULL,
    p_planned_stop_reason text DEFAULT NULL,
    p_change_reason text DEFAULT 'system_update'
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    ctx record;  -- the context row after the change
BEGIN
    INSERT INTO factory_telemetry.context AS c (
        equipment_code, production_line_id, current_job_id, production_schedule_id,
        target_speed, current_product_type_id, shift_id, target_quantity, actual_quantity,
        production_efficiency, quality_rate, changeover_status, current_operator,
        current_shift, planned_stop, planned_stop_reason, last_production_update, updated_at)
    VALUES (
        p_equipment_code, p_production_line_id, p_current_job_id, p_production_schedule_id,
        p_target_speed, p_current_product_type_id, p_shift_id,
        COALESCE(p_target_quantity, 0), COALESCE(p_actual_quantity, 0),
        COALESCE(p_production_efficiency, 0.0), COALESCE(p_quality_rate, 0.0),
        COALESCE(p_changeover_status, 'none'), p_current_operator, p_current_shift,
        COALESCE(p_planned_stop, false), p_planned_stop_reason, now(), now())
    ON CONFLICT (equipment_code) DO UPDATE SET
        production_line_id      = COALESCE(p_production_line_id, c.production_line_id),
        current_job_id          = COALESCE(p_current_job_id, c.current_job_id),
        production_schedule_id  = COALESCE(p_production_schedule_id, c.production_schedule_id),
        target_speed            = COALESCE(p_target_speed, c.target_speed),
        current_product_type_id = COALESCE(p_current_product_type_id, c.current_product_type_id),
        shift_id                = COALESCE(p_shift_id, c.shift_id),
        target_quantity         = COALESCE(p_target_quantity, c.target_quantity),
        actual_quantity         = COALESCE(p_actual_quantity, c.actual_quantity),
        production_efficiency   = COALESCE(p_production_efficiency, c.production_efficiency),
        quality_rate            = COALESCE(p_quality_rate, c.quality_rate),
        changeover_status       = COALESCE(p_changeover_status, c.changeover_status),
        current_operator        = COALESCE(p_current_operator, c.current_operator),
        current_shift           = COALESCE(p_current_shift, c.current_shift),
        planned_stop            = COALESCE(p_planned_stop, c.planned_stop),
        planned_stop_reason     = COALESCE(p_planned_stop_reason, c.planned_stop_reason),
        last_production_update  = now(),
        updated_at              = now()
    RETURNING c.* INTO ctx;

    INSERT INTO factory_telemetry.production_context_history (equipment_code, context_data, change_reason)
    VALUES (p_equipment_code, to_jsonb(ctx), p_change_reason);
END;
$$;

-- The production context of one piece of equipment, with line, product and shift names.
CREATE OR REPLACE FUNCTION factory_telemetry.get_equipment_production_context(p_equipment_code text)
RETURNS TABLE(equipment_code text, production_line_id uuid, line_code text, line_name text,
              current_job_id uuid, production_schedule_id uuid, target_speed real,
              current_product_type_id uuid, product_code text, product_name text,
              shift_id uuid, shift_name text, target_quantity integer, actual_quantity integer,
              production_efficiency real, quality_rate real, changeover_status text,
              current_operator text, current_shift text, planned_stop boolean,
              planned_stop_reason text, last_production_update timestamp with time zone)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT c.equipment_code, c.production_line_id, pl.line_code, pl.name,
           c.current_job_id, c.production_schedule_id, c.target_speed,
           c.current_product_type_id, pt.product_code, pt.name,
           c.shift_id, s.name, c.target_quantity, c.actual_quantity,
           c.production_efficiency, c.quality_rate, c.changeover_status,
           c.current_operator, c.current_shift, c.planned_stop,
           c.planned_stop_reason, c.last_production_update
    FROM factory_telemetry.context c
    LEFT JOIN factory_telemetry.production_lines pl ON pl.id = c.production_line_id
    LEFT JOIN factory_telemetry.product_types pt ON pt.id = c.current_product_type_id
    LEFT JOIN factory_telemetry.production_shifts s ON s.id = c.shift_id
    WHERE c.equipment_code = p_equipment_code;
END;
$$;
