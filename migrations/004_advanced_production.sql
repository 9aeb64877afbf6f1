-- 004_advanced_production.sql
-- MS5.0 advanced production: shifts and shift assignments, production targets,
-- quality checks and defect codes, maintenance work orders and tasks, material
-- and energy consumption, production alerts, production KPIs, and the views
-- public.v_production_performance and public.v_maintenance_overview.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed). energy_consumption and production_kpis keep their
-- legacy shape (id bigserial primary key); the TimescaleDB conversion is done
-- by the migration tool.

CREATE TABLE IF NOT EXISTS factory_telemetry.production_shifts (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name text NOT NULL,
    start_time time without time zone NOT NULL,
    end_time time without time zone NOT NULL,
    description text,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.shift_assignments (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid,
    shift_id uuid,
    line_id uuid,
    assigned_date date NOT NULL,
    is_primary boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.production_targets (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    product_type_id uuid,
    target_date date NOT NULL,
    shift_id uuid,
    target_quantity integer NOT NULL,
    target_oee real,
    target_availability real,
    target_performance real,
    target_quality real,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.quality_checks (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    product_type_id uuid,
    check_time timestamp with time zone NOT NULL,
    check_type text NOT NULL,
    check_result text NOT NULL,
    quantity_checked integer NOT NULL,
    quantity_passed integer NOT NULL,
    quantity_failed integer NOT NULL,
    defect_codes text[],
    notes text,
    checked_by uuid,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.defect_codes (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    code text NOT NULL,
    name text NOT NULL,
    description text,
    category text NOT NULL,
    severity text NOT NULL,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.maintenance_work_orders (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    work_order_number text NOT NULL,
    equipment_code text NOT NULL,
    title text NOT NULL,
    description text,
    priority text NOT NULL,
    status text DEFAULT 'open'::text,
    work_type text NOT NULL,
    scheduled_start timestamp with time zone,
    scheduled_end timestamp with time zone,
    actual_start timestamp with time zone,
    actual_end timestamp with time zone,
    estimated_duration_hours real,
    actual_duration_hours real,
    assigned_to uuid,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.maintenance_tasks (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    work_order_id uuid,
    task_name text NOT NULL,
    description text,
    task_order integer NOT NULL,
    estimated_duration_minutes integer,
    actual_duration_minutes integer,
    status text DEFAULT 'pending'::text,
    completed_by uuid,
    completed_at timestamp with time zone,
    notes text,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.material_consumption (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    material_code text NOT NULL,
    material_name text NOT NULL,
    consumption_date date NOT NULL,
    shift_id uuid,
    quantity_consumed real NOT NULL,
    unit_of_measure text NOT NULL,
    cost_per_unit real,
    total_cost real,
    recorded_by uuid,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.energy_consumption (
    id bigserial NOT NULL,
    equipment_code text NOT NULL,
    consumption_time timestamp with time zone NOT NULL,
    power_consumption_kw real NOT NULL,
    energy_consumption_kwh real NOT NULL,
    voltage_v real,
    current_a real,
    power_factor real,
    temperature_c real,
    humidity_percent real
);

CREATE TABLE IF NOT EXISTS factory_telemetry.production_alerts (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    line_id uuid,
    equipment_code text,
    alert_type text NOT NULL,
    severity text NOT NULL,
    title text NOT NULL,
    message text NOT NULL,
    threshold_value real,
    actual_value real,
    is_acknowledged boolean DEFAULT false,
    acknowledged_by uuid,
    acknowledged_at timestamp with time zone,
    is_resolved boolean DEFAULT false,
    resolved_by uuid,
    resolved_at timestamp with time zone,
    resolution_notes text,
    created_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.production_kpis (
    id bigserial NOT NULL,
    line_id uuid,
    kpi_date date NOT NULL,
    shift_id uuid,
    oee real,
    availability real,
    performance real,
    quality real,
    total_production integer,
    good_parts integer,
    scrap_parts integer,
    rework_parts integer,
    total_downtime_minutes integer,
    planned_downtime_minutes integer,
    unplanned_downtime_minutes integer,
    changeover_time_minutes integer,
    maintenance_time_minutes integer,
    energy_consumption_kwh real,
    material_waste_percent real,
    first_pass_yield real,
    created_at timestamp with time zone DEFAULT now()
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
            ('factory_telemetry.production_shifts',       'production_shifts_pkey',                                          'PRIMARY KEY (id)'),
            ('factory_telemetry.shift_assignments',       'shift_assignments_pkey',                                          'PRIMARY KEY (id)'),
            ('factory_telemetry.production_targets',      'production_targets_pkey',                                         'PRIMARY KEY (id)'),
            ('factory_telemetry.production_targets',      'production_targets_line_id_product_type_id_target_date_shif_key', 'UNIQUE (line_id, product_type_id, target_date, shift_id)'),
            ('factory_telemetry.quality_checks',          'quality_checks_pkey',                                             'PRIMARY KEY (id)'),
            ('factory_telemetry.defect_codes',            'defect_codes_pkey',                                               'PRIMARY KEY (id)'),
            ('factory_telemetry.defect_codes',            'defect_codes_code_key',                                           'UNIQUE (code)'),
            ('factory_telemetry.maintenance_work_orders', 'maintenance_work_orders_pkey',                                    'PRIMARY KEY (id)'),
            ('factory_telemetry.maintenance_work_orders', 'maintenance_work_orders_work_order_number_key',                   'UNIQUE (work_order_number)'),
            ('factory_telemetry.maintenance_tasks',       'maintenance_tasks_pkey',                                          'PRIMARY KEY (id)'),
            ('factory_telemetry.material_consumption',    'material_consumption_pkey',                                       'PRIMARY KEY (id)'),
            ('factory_telemetry.energy_consumption',      'energy_consumption_pkey',                                         'PRIMARY KEY (id)'),
            ('factory_telemetry.production_alerts',       'production_alerts_pkey',                                          'PRIMARY KEY (id)'),
            ('factory_telemetry.production_kpis',         'production_kpis_pkey',                                            'PRIMARY KEY (id)'),
            ('factory_telemetry.shift_assignments',       'shift_assignments_line_id_fkey',                                  'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.shift_assignments',       'shift_assignments_shift_id_fkey',                                 'FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id)'),
            ('factory_telemetry.shift_assignments',       'shift_assignments_user_id_fkey',                                  'FOREIGN KEY (user_id) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.production_targets',      'production_targets_created_by_fkey',                              'FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.production_targets',      'production_targets_line_id_fkey',                                 'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.production_targets',      'production_targets_product_type_id_fkey',                         'FOREIGN KEY (product_type_id) REFERENCES factory_telemetry.product_types(id)'),
            ('factory_telemetry.production_targets',      'production_targets_shift_id_fkey',                                'FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id)'),
            ('factory_telemetry.quality_checks',          'quality_checks_checked_by_fkey',                                  'FOREIGN KEY (checked_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.quality_checks',          'quality_checks_line_id_fkey',                                     'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.quality_checks',          'quality_checks_product_type_id_fkey',                             'FOREIGN KEY (product_type_id) REFERENCES factory_telemetry.product_types(id)'),
            ('factory_telemetry.maintenance_work_orders', 'maintenance_work_orders_assigned_to_fkey',                        'FOREIGN KEY (assigned_to) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.maintenance_work_orders', 'maintenance_work_orders_created_by_fkey',                         'FOREIGN KEY (created_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.maintenance_tasks',       'maintenance_tasks_completed_by_fkey',                             'FOREIGN KEY (completed_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.maintenance_tasks',       'maintenance_tasks_work_order_id_fkey',                            'FOREIGN KEY (work_order_id) REFERENCES factory_telemetry.maintenance_work_orders(id)'),
            ('factory_telemetry.material_consumption',    'material_consumption_line_id_fkey',                               'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.material_consumption',    'material_consumption_recorded_by_fkey',                           'FOREIGN KEY (recorded_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.material_consumption',    'material_consumption_shift_id_fkey',                              'FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id)'),
            ('factory_telemetry.production_alerts',       'production_alerts_acknowledged_by_fkey',                          'FOREIGN KEY (acknowledged_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.production_alerts',       'production_alerts_line_id_fkey',                                  'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.production_alerts',       'production_alerts_resolved_by_fkey',                              'FOREIGN KEY (resolved_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.production_kpis',         'production_kpis_line_id_fkey',                                    'FOREIGN KEY (line_id) REFERENCES factory_telemetry.production_lines(id)'),
            ('factory_telemetry.production_kpis',         'production_kpis_shift_id_fkey',                                   'FOREIGN KEY (shift_id) REFERENCES factory_telemetry.production_shifts(id)')
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
CREATE INDEX IF NOT EXISTS idx_shift_assignments_user_id ON factory_telemetry.shift_assignments (user_id);
CREATE INDEX IF NOT EXISTS idx_shift_assignments_date ON factory_telemetry.shift_assignments (assigned_date);
CREATE INDEX IF NOT EXISTS idx_production_targets_line_date ON factory_telemetry.production_targets (line_id, target_date);
CREATE INDEX IF NOT EXISTS idx_quality_checks_line_date ON factory_telemetry.quality_checks (line_id, check_time);
CREATE INDEX IF NOT EXISTS idx_quality_checks_result ON factory_telemetry.quality_checks (check_result);
CREATE INDEX IF NOT EXISTS idx_maintenance_work_orders_equipment ON factory_telemetry.maintenance_work_orders (equipment_code);
CREATE INDEX IF NOT EXISTS idx_maintenance_work_orders_status ON factory_telemetry.maintenance_work_orders (status);
CREATE INDEX IF NOT EXISTS idx_maintenance_work_orders_priority ON factory_telemetry.maintenance_work_orders (priority);
CREATE INDEX IF NOT EXISTS idx_material_consumption_line_date ON factory_telemetry.material_consumption (line_id, consumption_date);
CREATE INDEX IF NOT EXISTS idx_energy_consumption_equipment_time ON factory_telemetry.energy_consumption (equipment_code, consumption_time);
CREATE INDEX IF NOT EXISTS idx_production_alerts_line_id ON factory_telemetry.production_alerts (line_id);
CREATE INDEX IF NOT EXISTS idx_production_alerts_severity ON factory_telemetry.production_alerts (severity);
CREATE INDEX IF NOT EXISTS idx_production_alerts_acknowledged ON factory_telemetry.production_alerts (is_acknowledged);
CREATE INDEX IF NOT EXISTS idx_production_kpis_line_date ON factory_telemetry.production_kpis (line_id, kpi_date);

-- Views
CREATE OR REPLACE VIEW public.v_production_performance AS
SELECT pl.line_code,
       pl.name AS line_name,
       pk.kpi_date,
       s.name AS shift_name,
       pk.oee,
       pk.availability,
       pk.performance,
       pk.quality,
       pk.total_production,
       pk.good_parts,
       pk.scrap_parts,
       pk.rework_parts,
       pk.total_downtime_minutes,
       pk.unplanned_downtime_minutes,
       pk.energy_consumption_kwh,
       pk.material_waste_percent,
       pk.first_pass_yield
FROM factory_telemetry.production_kpis pk
JOIN factory_telemetry.production_lines pl ON pl.id = pk.line_id
LEFT JOIN factory_telemetry.production_shifts s ON s.id = pk.shift_id
ORDER BY pk.kpi_date DESC, pl.line_code;

CREATE OR REPLACE VIEW public.v_maintenance_overview AS
SELECT mwo.id,
       mwo.work_order_number,
       mwo.equipment_code,
       mwo.title,
       mwo.priority,
       mwo.status,
       mwo.work_type,
       mwo.scheduled_start,
       mwo.scheduled_end,
       mwo.actual_start,
       mwo.actual_end,
       mwo.estimated_duration_hours,
       mwo.actual_duration_hours,
       ua.username AS assigned_to,
       uc.username AS created_by,
       count(mt.id) AS total_tasks,
       count(mt.id) FILTER (WHERE mt.status = 'completed') AS completed_tasks
FROM factory_telemetry.maintenance_work_orders mwo
LEFT JOIN factory_telemetry.users ua ON ua.id = mwo.assigned_to
LEFT JOIN factory_telemetry.users uc ON uc.id = mwo.created_by
LEFT JOIN factory_telemetry.maintenance_tasks mt ON mt.work_order_id = mwo.id
GROUP BY mwo.id, ua.username, uc.username
ORDER BY mwo.created_at DESC;
