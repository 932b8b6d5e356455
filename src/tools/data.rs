//! Sample data the built-in demo tools answer with: our own records, in the shapes the public
//! realtime-agents demo's frontend and prompts expect.

use serde_json::{Value, json};

/// Orders of the retail demo (one delivered, one in transit).
pub fn orders() -> Value {
    json!({"orders": [
        {
            "order_id": "SNP-20230914-001",
            "order_date": "2024-12-02T10:15:00Z",
            "delivered_date": "2024-12-06T14:02:00Z",
            "order_status": "delivered",
            "subtotal_usd": 489.98,
            "total_usd": 521.83,
            "items": [
                {"item_id": "SNB-A100", "item_name": "Ridgeline All-Mountain Snowboard 156", "retail_price_usd": 399.99},
                {"item_id": "ACC-W020", "item_name": "Pocket Wax Kit", "retail_price_usd": 89.99}
            ]
        },
        {
            "order_id": "SNP-20230820-002",
            "order_date": "2024-12-20T08:40:00Z",
            "delivered_date": null,
            "order_status": "in_transit",
            "subtotal_usd": 664.97,
            "total_usd": 708.19,
            "items": [
                {"item_id": "BT-C300", "item_name": "Summit Lace Boots 10", "retail_price_usd": 279.99},
                {"item_id": "APP-J210", "item_name": "Stormline Insulated Jacket M", "retail_price_usd": 259.99},
                {"item_id": "ACC-G050", "item_name": "Clearview Goggles", "retail_price_usd": 124.99}
            ]
        }
    ]})
}

/// The store's return policy.
pub const RETURN_POLICY: &str = "Snowy Peak Boards return policy. Items may be returned within 30 days \
of delivery if they are unused, in their original packaging and with tags attached. Manufacturing \
defects are covered for one year from delivery. Returned items are inspected within 5 business \
days of arrival. Approved refunds go back to the original payment method. After 30 days, a return \
may be accepted as store credit at the store's discretion. Boards that show riding wear (edge \
burrs, base scratches, binding marks) count as used.";

/// Current promotions (ids 101-402), before filtering.
pub fn sales() -> Vec<Value> {
    let item = |id: u32, kind: &str, name: &str, retail: f64, sale: f64| {
        let pct = ((retail - sale) / retail * 100.0).round();
        json!({"item_id": id, "type": kind, "name": name, "retail_price_usd": retail,
               "sale_price_usd": sale, "sale_discount_pct": pct})
    };
    vec![
        item(101, "snowboard", "Ridgeline All-Mountain 156", 449.0, 359.0),
        item(102, "snowboard", "Powder Arrow Freeride 160", 529.0, 449.0),
        item(201, "apparel", "Stormline Insulated Jacket", 259.0, 181.0),
        item(202, "apparel", "Trailbreak Shell Pants", 189.0, 151.0),
        item(301, "boots", "Summit Lace Boots", 279.0, 237.0),
        item(302, "boots", "Quickdial Freestyle Boots", 319.0, 255.0),
        item(401, "accessories", "Clearview Goggles", 125.0, 94.0),
        item(402, "accessories", "Pocket Wax Kit", 30.0, 24.0),
    ]
}

/// The telco demo's account.
pub fn account() -> Value {
    json!({
        "accountId": "NT-123456",
        "name": "Alex Morgan",
        "phone": "+1-206-555-0142",
        "email": "alex.morgan@example.com",
        "plan": "Unlimited Plus",
        "balanceDue": "$42.17",
        "lastBillDate": "2024-11-15",
        "lastPaymentDate": "2024-11-20",
        "lastPaymentAmount": "$68.40",
        "status": "Active",
        "address": {"street": "48 Alder Way", "city": "Seattle", "state": "WA", "zip": "98101"},
        "lastBillDetails": {
            "basePlan": "$55.00",
            "internationalCalls": "$8.25",
            "dataOverage": "$0.00",
            "taxesAndFees": "$5.15",
            "notes": "A one-time $8.25 charge for calls to Canada appears on the last bill."
        }
    })
}

/// The telco demo's policy documents.
pub fn policies() -> Value {
    json!([
        {"id": "ID-010", "name": "Family plan policy", "topic": "family plan options",
         "content": "Up to 5 lines can share one family plan. Each added line gets a 10% discount on its monthly fee, and all lines share the plan's data allowance."},
        {"id": "ID-020", "name": "Promotions and discounts", "topic": "promotions and offers",
         "content": "New customers who switch get one month of service free. Loyalty discounts apply after 24 months of continuous service. Promotions cannot be combined."},
        {"id": "ID-030", "name": "International plans", "topic": "international roaming and calling",
         "content": "International add-ons cover calls and texts to 40 countries. Roaming without an add-on is billed per minute and per megabyte at the posted rates."},
        {"id": "ID-040", "name": "Handset offers", "topic": "phones and device upgrades",
         "content": "Customers may upgrade a handset after 18 months. Trade-in credit depends on the device's model and condition and is applied over 24 monthly bills."}
    ])
}

/// The telco demo's stores.
pub fn stores() -> Value {
    let s = |name: &str, address: &str, zip: &str, phone: &str| {
        json!({"name": name, "address": address, "zip_code": zip, "phone": phone,
               "hours": "Mon-Sat 10am-7pm, Sun 11am-5pm"})
    };
    json!([
        s(
            "NewTelco San Francisco Market St",
            "812 Market St, San Francisco, CA",
            "94103",
            "(415) 555-0101"
        ),
        s(
            "NewTelco Los Angeles Wilshire",
            "3150 Wilshire Blvd, Los Angeles, CA",
            "90010",
            "(213) 555-0102"
        ),
        s(
            "NewTelco San Diego Gaslamp",
            "455 Fifth Ave, San Diego, CA",
            "92101",
            "(619) 555-0103"
        ),
        s(
            "NewTelco New York Midtown",
            "250 W 34th St, New York, NY",
            "10119",
            "(212) 555-0104"
        ),
        s(
            "NewTelco Brooklyn Heights",
            "120 Court St, Brooklyn, NY",
            "11201",
            "(718) 555-0105"
        ),
        s(
            "NewTelco Boston Back Bay",
            "500 Boylston St, Boston, MA",
            "02116",
            "(617) 555-0106"
        ),
        s(
            "NewTelco Cambridge Square",
            "1400 Massachusetts Ave, Cambridge, MA",
            "02138",
            "(617) 555-0107"
        ),
        s(
            "NewTelco Washington Dupont",
            "1350 Connecticut Ave NW, Washington, DC",
            "20036",
            "(202) 555-0108"
        ),
        s(
            "NewTelco Miami Brickell",
            "801 Brickell Ave, Miami, FL",
            "33131",
            "(305) 555-0109"
        ),
        s(
            "NewTelco Orlando Downtown",
            "200 S Orange Ave, Orlando, FL",
            "32801",
            "(407) 555-0110"
        )
    ])
}
